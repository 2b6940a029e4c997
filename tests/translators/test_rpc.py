"""OCPP-J framing and the error-code spellings of each version."""

from __future__ import annotations

import orjson
import pytest
from ocpp import exceptions as ocpp_exceptions

from translators import rpc
from translators.rpc import V16, V201


@pytest.mark.parametrize(
    ("error", "spelling_16", "spelling_201"),
    [
        # OCPP-J 1.6 errata §5.2 / §5.1: the misspellings stay ("do not fix"); 2.0.1 Part 4 Table 8.
        (rpc.FormatViolation, "FormationViolation", "FormatViolation"),
        (rpc.OccurrenceConstraintViolation, "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        (rpc.TypeConstraintViolation, "TypeConstraintViolation", "TypeConstraintViolation"),
        (rpc.PropertyConstraintViolation, "PropertyConstraintViolation", "PropertyConstraintViolation"),
        (rpc.ProtocolError, "ProtocolError", "ProtocolError"),
        (rpc.NotImplementedAction, "NotImplemented", "NotImplemented"),
        (rpc.NotSupported, "NotSupported", "NotSupported"),
        (rpc.InternalError, "InternalError", "InternalError"),
        (rpc.GenericError, "GenericError", "GenericError"),
        (rpc.MessageTypeNotSupported, "GenericError", "MessageTypeNotSupported"),
        (rpc.RpcFrameworkError, "ProtocolError", "RpcFrameworkError"),
    ],
)
def test_error_codes_are_spelled_per_version(error: type[rpc.OcppError], spelling_16: str, spelling_201: str) -> None:
    assert error.code_for(V16) == spelling_16 and spelling_16 in rpc.ERROR_CODES_16
    assert error.code_for(V201) == spelling_201 and spelling_201 in rpc.ERROR_CODES_201


def test_spellings_agree_with_the_independent_ocpp_library() -> None:
    assert ocpp_exceptions.FormationViolationError.code == rpc.FormatViolation.code_16
    assert ocpp_exceptions.OccurenceConstraintViolationError.code == rpc.OccurrenceConstraintViolation.code_16
    assert ocpp_exceptions.FormatViolationError.code == rpc.FormatViolation.code
    assert ocpp_exceptions.OccurrenceConstraintViolationError.code == rpc.OccurrenceConstraintViolation.code


def test_code_tables_translate_both_ways() -> None:
    for code in rpc.ERROR_CODES_16:
        assert rpc.ERROR_CODE_16_TO_201[code] in rpc.ERROR_CODES_201
    for code in rpc.ERROR_CODES_201:
        assert rpc.ERROR_CODE_201_TO_16[code] in rpc.ERROR_CODES_16


def test_frames_round_trip() -> None:
    assert rpc.parse(rpc.dump_call("1", "Heartbeat", {})) == rpc.Call("1", "Heartbeat", {})
    assert rpc.parse(rpc.dump_result("1", {"a": 1})) == rpc.CallResult("1", {"a": 1})
    assert rpc.parse(b'[4,"1","GenericError","x",{}]') == rpc.CallError("1", "GenericError", "x", {})


def test_error_description_is_cut_to_255_characters() -> None:
    frame = orjson.loads(rpc.dump_error("1", rpc.GenericError("x" * 400), V201))
    assert len(frame[3]) == 255


@pytest.mark.parametrize(
    ("raw", "code", "message_id"),
    [
        (b"nope", "RpcFrameworkError", "-1"),
        (b"[]", "RpcFrameworkError", "-1"),
        (b'[2, 5, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        (b'[2, "' + b"x" * 37 + b'", "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        (b'[2, "a", "Heartbeat", []]', "FormatViolation", "a"),
        (b'[2, "a", 3, {}]', "ProtocolError", "a"),
        (b'[9, "a"]', "MessageTypeNotSupported", "a"),
    ],
)
def test_unreadable_frames_name_the_error_and_the_id(raw: bytes, code: str, message_id: str) -> None:
    with pytest.raises(rpc.FrameError) as caught:
        rpc.parse(raw)
    assert (caught.value.error.code, caught.value.message_id) == (code, message_id)

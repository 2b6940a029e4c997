"""OCPP-J RPC framing shared by every leg: parse and serialise CALL / CALLRESULT / CALLERROR.

Frames stay plain lists and dicts from orjson. Errors are one `OcppError` tree whose classes carry the
CALLERROR code; `OcppError.code_for(version)` spells it the way the peer's version does (OCPP-J 1.6 errata
§5.1/§5.2 keep `FormationViolation` and `OccurenceConstraintViolation` on purpose, "do not fix").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson

Version = Literal["1.6", "2.0.1"]
V16: Version = "1.6"
V201: Version = "2.0.1"

CALL, CALLRESULT, CALLERROR = 2, 3, 4

# OCPP-J 1.6 §4.1.3 / OCPP 2.0.1 Part 4 §4.1.3: a message id is a string of at most 36 characters.
MAX_MESSAGE_ID = 36
# OCPP 2.0.1 Part 4 §4.2.3: errorDescription is at most 255 characters.
MAX_ERROR_DESCRIPTION = 255
# OCPP 2.0.1 Part 4 §4.2.3: the message id of a CALLERROR to a frame whose id could not be read.
UNREADABLE_ID = "-1"


class OcppError(Exception):
    """An error that becomes a CALLERROR on the wire; the class names the OCPP error code."""

    code: ClassVar[str] = "GenericError"
    code_16: ClassVar[str | None] = None  # the 1.6 spelling, where it differs

    def __init__(self, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.details = details or {}

    @classmethod
    def code_for(cls, version: Version) -> str:
        return (cls.code_16 or cls.code) if version == V16 else cls.code


class FormatViolation(OcppError):
    code = "FormatViolation"
    code_16 = "FormationViolation"


class ProtocolError(OcppError):
    code = "ProtocolError"


class TypeConstraintViolation(OcppError):
    code = "TypeConstraintViolation"


class PropertyConstraintViolation(OcppError):
    code = "PropertyConstraintViolation"


def at_most(payload: dict[str, Any], field: str, target: str, limit: int) -> str:
    """`payload[field]`, refused by name when longer than the `limit` of the 2.0.1 `target` it becomes."""
    value: str = payload[field]
    if len(value) > limit:
        raise PropertyConstraintViolation(
            f"{field}: {len(value)} characters, OCPP 2.0.1 {target} takes at most {limit}", {"field": field}
        )
    return value


class OccurrenceConstraintViolation(OcppError):
    code = "OccurrenceConstraintViolation"
    code_16 = "OccurenceConstraintViolation"


class NotImplementedAction(OcppError):
    code = "NotImplemented"


class NotSupported(OcppError):
    code = "NotSupported"


class SecurityError(OcppError):
    code = "SecurityError"


class InternalError(OcppError):
    code = "InternalError"


class GenericError(OcppError):
    code = "GenericError"


class MessageTypeNotSupported(OcppError):
    # 2.0.1 Part 4 §4.4; 1.6 has no such code: GenericError is the nearest.
    code = "MessageTypeNotSupported"
    code_16 = "GenericError"


class RpcFrameworkError(OcppError):
    # 2.0.1 Part 4 Table 8 "MessageId could not be read"; 1.6 has no such code.
    code = "RpcFrameworkError"
    code_16 = "ProtocolError"


ERROR_CODES_16 = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)
ERROR_CODES_201 = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)

# Translating a CALLERROR code from one version's spelling to the other's (OCPP 2.0.1 Part 4 Table 8,
# OCPP-J 1.6 Table 7 and errata §5).
ERROR_CODE_16_TO_201 = {code: code for code in ERROR_CODES_16} | {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}
ERROR_CODE_201_TO_16 = {code: code for code in ERROR_CODES_201 if code in ERROR_CODES_16} | {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "MessageTypeNotSupported": "GenericError",
    "RpcFrameworkError": "ProtocolError",
}


@dataclass(slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(slots=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: dict[str, Any]


Message = Call | CallResult | CallError


class FrameError(OcppError):
    """A frame that is not a readable OCPP-J message; carries the id to answer with, if one was read."""

    def __init__(self, error: OcppError, message_id: str, is_call: bool) -> None:
        super().__init__(error.description, error.details)
        self.error = error
        self.message_id = message_id
        self.is_call = is_call


def parse(raw: str | bytes) -> Message:
    """Parse one OCPP-J frame; raise `FrameError` naming the id to answer (or "-1") when it is malformed."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(RpcFrameworkError(f"frame is not valid JSON: {exc}"), UNREADABLE_ID, True) from None
    if not isinstance(frame, list) or not frame:
        raise FrameError(RpcFrameworkError("frame is not a JSON array"), UNREADABLE_ID, True)
    type_id = frame[0]
    message_id = frame[1] if len(frame) > 1 else None
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_MESSAGE_ID:
        raise FrameError(
            RpcFrameworkError("message id must be a string of 1 to 36 characters"), UNREADABLE_ID, True
        )
    if type_id == CALL:
        if len(frame) != 4 or not isinstance(frame[2], str):
            raise FrameError(ProtocolError("CALL must be [2, messageId, action, payload]"), message_id, True)
        if not isinstance(frame[3], dict):
            raise FrameError(FormatViolation("CALL payload must be a JSON object"), message_id, True)
        return Call(message_id, frame[2], frame[3])
    if type_id == CALLRESULT:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            raise FrameError(ProtocolError("CALLRESULT must be [3, messageId, {payload}]"), message_id, False)
        return CallResult(message_id, frame[2])
    if type_id == CALLERROR:
        if len(frame) != 5 or not isinstance(frame[2], str) or not isinstance(frame[3], str):
            raise FrameError(
                ProtocolError("CALLERROR must be [4, messageId, code, description, {details}]"),
                message_id,
                False,
            )
        details = frame[4] if isinstance(frame[4], dict) else {}
        return CallError(message_id, frame[2], frame[3], details)
    raise FrameError(
        MessageTypeNotSupported(f"message type id {type_id!r} is not one of 2 (CALL), 3, 4"), message_id, True
    )


def dump_call(message_id: str, action: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps([CALL, message_id, action, payload])


def dump_result(message_id: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps([CALLRESULT, message_id, payload])


def dump_error(message_id: str, error: OcppError, version: Version) -> bytes:
    """A CALLERROR for `error`, its code spelled as `version` spells it, description within 255 chars."""
    description = error.description
    if len(description) > MAX_ERROR_DESCRIPTION:
        description = description[: MAX_ERROR_DESCRIPTION - 1] + "…"
    return orjson.dumps([CALLERROR, message_id, error.code_for(version), description, error.details])


def dump_error_code(message_id: str, code: str, description: str, details: dict[str, Any]) -> bytes:
    """A CALLERROR with a code already spelled for its destination."""
    if len(description) > MAX_ERROR_DESCRIPTION:
        description = description[: MAX_ERROR_DESCRIPTION - 1] + "…"
    return orjson.dumps([CALLERROR, message_id, code, description, details])

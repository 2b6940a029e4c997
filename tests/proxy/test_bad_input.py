"""Bad input from a charger gets the specific CALLERROR (or close) and nothing reaches the legacy."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url


async def exchange(ws: ClientConnection, raw: str | bytes) -> list[Any]:
    await ws.send(raw)
    return orjson.loads(await ws.recv())  # type: ignore[no-any-return]


BOOT_201 = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}

BAD_FRAMES = [
    pytest.param("{not json", ["-1", "RpcFrameworkError"], id="invalid-json"),
    pytest.param('{"a": 1}', ["-1", "RpcFrameworkError"], id="not-an-array"),
    pytest.param('[7, "m1", "Heartbeat", {}]', ["m1", "MessageTypeNotSupported"], id="wrong-message-type"),
    pytest.param('[2, "m2", "Heartbeat"]', ["m2", "ProtocolError"], id="call-without-payload"),
    pytest.param('[2, "m3", "NoSuchAction", {}]', ["m3", "NotImplemented"], id="unknown-action"),
    pytest.param(
        '[2, "m4", "StartTransaction", {"connectorId": 1, "idTag": "TAG0001", "meterStart": 0, '
        '"timestamp": "2026-01-01T00:00:00Z"}]',
        ["m4", "NotImplemented"],
        id="16-action-on-201",
    ),
    pytest.param(
        orjson.dumps([2, "m5", "Authorize", {"idToken": "TAG0001"}]).decode(),
        ["m5", "TypeConstraintViolation"],
        id="idToken-bare-string",
    ),
    pytest.param(
        orjson.dumps(
            [2, "m6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
        ).decode(),
        ["m6", "FormatViolation"],
        id="flat-16-boot",
    ),
    pytest.param(
        orjson.dumps([2, "m7", "BootNotification", {**BOOT_201, "reason": "Bored"}]).decode(),
        ["m7", "PropertyConstraintViolation"],
        id="enum-value",
    ),
    pytest.param(
        orjson.dumps([2, "m8", "BootNotification", {"reason": "PowerUp"}]).decode(),
        ["m8", "OccurrenceConstraintViolation"],
        id="missing-required",
    ),
    pytest.param(
        orjson.dumps(
            [
                2,
                "m9",
                "RequestStartTransaction",
                {"idToken": {"idToken": "T", "type": "Central"}, "remoteStartId": 1},
            ]
        ).decode(),
        ["m9", "NotSupported"],
        id="csms-action-from-charger",
    ),
    pytest.param(
        orjson.dumps(
            [2, "m10", "Authorize", {"idToken": {"idToken": "X" * 21, "type": "ISO14443"}}]
        ).decode(),
        ["m10", "PropertyConstraintViolation"],
        id="id-token-longer-than-16-idTag",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_FRAMES)
async def test_bad_frame_gets_its_callerror_and_nothing_is_forwarded(
    proxy: RunningProxy, legacy: LegacyCsms, raw: str, expected: list[str]
) -> None:
    async with connect(proxy_url(proxy) + "/BAD01", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        answer = await exchange(ws, raw)
        assert answer[0] == 4
        assert answer[1:3] == expected
        assert isinstance(answer[3], str) and answer[3] and len(answer[3]) <= 255
        assert isinstance(answer[4], dict)
        # the connection stays usable
        ok = await exchange(ws, orjson.dumps([2, "after", "Heartbeat", {}]))
        assert ok[:2] == [3, "after"]
    assert [frame[2] for _, frame in legacy.received] == ["Heartbeat"]


async def test_16_errors_are_spelled_the_16_way(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    async with connect(proxy_url(proxy) + "/BAD16", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        extra = await exchange(ws, '[2, "a", "Heartbeat", {"unexpected": 1}]')
        missing = await exchange(ws, '[2, "b", "Authorize", {}]')
    assert extra[2] == "FormationViolation"
    assert missing[2] == "OccurenceConstraintViolation"
    assert legacy.received == []


async def test_duplicate_outstanding_call_is_refused(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    async with connect(proxy_url(proxy) + "/BAD02", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2, "same", "Heartbeat", {}]')
        await ws.send('[2, "same", "Heartbeat", {}]')
        answers = [orjson.loads(await ws.recv()) for _ in range(2)]
    assert sorted(a[0] for a in answers) == [3, 4]
    (error,) = [a for a in answers if a[0] == 4]
    assert error[1:3] == ["same", "RpcFrameworkError"]
    assert [frame[2] for _, frame in legacy.received] == ["Heartbeat"]


async def test_oversized_frame_closes_with_1009(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    big = orjson.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * (300 * 1024)}])
    async with connect(proxy_url(proxy) + "/BAD03", subprotocols=["ocpp2.0.1"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(big)
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert legacy.received == []


async def test_text_that_is_not_utf8_closes_with_1007(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    # RFC 6455 §8.1: an endpoint that finds a text message is not UTF-8 fails the connection.
    async with connect(proxy_url(proxy) + "/BAD04", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send(b'[2,"u1","DataTransfer",{"vendorId":"\xff\xfe"}]', text=True)
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert "invalid start byte" in closed.value.rcvd.reason
    assert legacy.received == []


async def test_a_message_in_too_many_fragments_closes_with_1009(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    from websockets.asyncio.messages import MAX_FRAGMENTS

    fragments = ['[2,"f1","Heartbeat",{', *([""] * MAX_FRAGMENTS), "}]"]
    async with connect(proxy_url(proxy) + "/BAD05", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.send(fragments)
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason == "too many fragments"
    assert legacy.received == []


@pytest.mark.parametrize(
    ("path", "subprotocols", "needle"),
    [
        ("/ocpp/" + "A" * 49, ["ocpp2.0.1"], "1 to 48 characters"),
        ("/ocpp/bad%20id", ["ocpp2.0.1"], "1 to 48 characters"),
        ("/ocpp/GOOD01", ["ocpp2.0"], "this proxy speaks ocpp2.0.1, ocpp1.6"),
        ("/ocpp/GOOD01", None, "got none"),
    ],
)
async def test_handshake_refusals_say_why(
    proxy: RunningProxy, legacy: LegacyCsms, path: str, subprotocols: list[str] | None, needle: str
) -> None:
    url = f"ws://127.0.0.1:{proxy.proxy.port}{path}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=subprotocols):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 400
    assert needle in refused.value.response.body.decode()
    assert legacy.received == []


async def test_both_offered_prefers_201(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    async with connect(proxy_url(proxy) + "/BOTH01", subprotocols=["ocpp1.6", "ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp2.0.1"
        await ws.send(orjson.dumps([2, "b1", "BootNotification", BOOT_201]).decode())
        assert orjson.loads(await ws.recv())[2]["status"] == "Accepted"

"""Property-based: payloads generated from the OCA schemas themselves, for every translated action in both
directions, translate to payloads that validate against the target schema; answers generated from the
target's response schema translate back to valid responses; and the values the mappings promise to carry
come through unchanged."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.schema_strategies import payloads
from tests.translators.conversation import new_bridge
from translators import schemas
from translators.bridge import Bridge
from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS


def prepared_bridge() -> Bridge:
    """A bridge whose station has shown EVSEs 1-2 and has a transaction open at the legacy as id 7."""
    bridge = new_bridge()
    for evse in (1, 2):
        bridge.state.connector_for(evse, 1)
    return bridge


TRANSLATED = [
    pytest.param(leg, action, id=f"{leg}:{action}")
    for leg, calls in (("charger", CHARGER_CALLS), ("legacy", LEGACY_CALLS))
    for action, disposition in sorted(calls.items())
    if disposition.kind != "refused"
]


@pytest.mark.parametrize(("leg", "action"), TRANSLATED)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_payloads_translate_to_valid_frames(leg: str, action: str, data: st.DataObject) -> None:
    compiled = schemas.load()
    source = "2.0.1" if leg == "charger" else "1.6"
    target_leg, target = ("legacy", "1.6") if leg == "charger" else ("charger", "2.0.1")
    payload = data.draw(payloads(source, action, "request"), label="request")
    bridge = prepared_bridge()
    outcome = bridge.receive(leg, orjson.dumps([2, "x1", action, payload]), 0)  # type: ignore[arg-type]
    for _ in range(20):  # a translation fans out into a handful of CALLs at most
        requests = [orjson.loads(f) for f in (outcome.to_legacy if target_leg == "legacy" else outcome.to_charger)]
        calls = [f for f in requests if f[0] == 2]
        if not calls:
            break
        (call,) = calls
        compiled.validate(target, "request", call[2], call[3])  # type: ignore[arg-type]
        answer = data.draw(payloads(target, call[2], "response"), label=f"{call[2]} answer")
        outcome = bridge.receive(target_leg, orjson.dumps([3, call[1], answer]), 0)  # type: ignore[arg-type]
    replies = [orjson.loads(f) for f in (outcome.to_charger if leg == "charger" else outcome.to_legacy)]
    (reply,) = [f for f in replies if f[1] == "x1"]
    if reply[0] == 4:
        assert reply[2] != "InternalError", reply  # a deliberate refusal, never a translation bug
    else:
        compiled.validate(source, "response", action, reply[2])  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_authorize_carries_token_and_verdict(data: st.DataObject) -> None:
    plain = payloads("2.0.1", "Authorize", "request").filter(
        lambda p: "certificate" not in p and "iso15118CertificateHashData" not in p
    )
    payload = data.draw(plain.filter(lambda p: len(p["idToken"]["idToken"]) <= 20))
    bridge = prepared_bridge()
    (call,) = [
        orjson.loads(f) for f in bridge.receive("charger", orjson.dumps([2, "a", "Authorize", payload]), 0).to_legacy
    ]
    assert call[3] == {"idTag": payload["idToken"]["idToken"]}
    answer = data.draw(payloads("1.6", "Authorize", "response"))
    (reply,) = [orjson.loads(f) for f in bridge.receive("legacy", orjson.dumps([3, call[1], answer]), 0).to_charger]
    info = reply[2]["idTokenInfo"]
    assert info["status"] == answer["idTagInfo"]["status"]
    assert info.get("cacheExpiryDateTime") == answer["idTagInfo"].get("expiryDate")
    assert info.get("groupIdToken", {}).get("idToken") == answer["idTagInfo"].get("parentIdTag")

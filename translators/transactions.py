"""Transactions (2.0.1 functional blocks E and F): TransactionEvent ⇄ Start/MeterValues/StopTransaction,
RequestStart/StopTransaction ⇄ RemoteStart/StopTransaction.

A 2.0.1 transaction becomes one 1.6 transaction: StartTransaction as soon as an id token is known (a
transaction started by plugging in waits for authorization), MeterValues and StopTransaction only
after the legacy assigned its integer transactionId. The charger's TransactionEvent is answered only
after the legacy acknowledged everything it caused, so the charger's own queue keeps what the legacy
has not yet got. A retransmitted event (seqNo already translated) is answered without forwarding.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from translators.authorization import to_id_tag, to_id_token, to_id_token_info
from translators.availability import flat_connector, status_changes
from translators.bridge import Context, Disposition, PeerRefused, Request
from translators.meter_values import METER_VALUE_RULES, UNITS_16_STOP_TRANSACTION, register_wh, to_meter_values_16
from translators.rpc import OccurrenceConstraintViolation, PropertyConstraintViolation
from translators.smart_charging import to_charging_profile_201
from translators.state import MAX_BUFFERED_METER_VALUES, Transaction

# messages.md §2.5.2: 2.0.1 ReasonEnumType → 1.6 Reason (same names carried; the rest has no 1.6 value).
STOP_REASON_201_TO_16 = {
    "DeAuthorized": "DeAuthorized",
    "EmergencyStop": "EmergencyStop",
    "EVDisconnected": "EVDisconnected",
    "Local": "Local",
    "Other": "Other",
    "PowerLoss": "PowerLoss",
    "Reboot": "Reboot",
    "Remote": "Remote",
    "MasterPass": "Local",
    "LocalOutOfCredit": "Local",
}
# 2.0.1 ImmediateReset is a 1.6 HardReset or SoftReset depending on what the legacy asked for.
RESET_REASON_16 = {"Hard": "HardReset", "Soft": "SoftReset"}
REMOTE_START_STOP_STATUS = {"Accepted": "Accepted", "Rejected": "Rejected"}


def stop_reason_16(ctx: Context, stopped_reason: str | None) -> str:
    if stopped_reason is None:
        return "Local"  # 2.0.1 TransactionType: absent stoppedReason means Local, as in 1.6 (S16 §6.49)
    if stopped_reason == "ImmediateReset":
        return RESET_REASON_16.get(ctx.state.last_reset_type or "Hard", "HardReset")
    return STOP_REASON_201_TO_16.get(stopped_reason, "Other")


def transaction_event(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    state = ctx.state
    info = payload["transactionInfo"]
    tx_id = info["transactionId"]
    tx = state.transactions.get(tx_id)
    if tx is None and tx_id in state.recently_ended:
        return {}  # a retransmitted Ended: the legacy already has the StopTransaction
    if tx is not None and payload["seqNo"] <= tx.seq_no and not fills_gap(tx, payload):
        return reply_for(tx, payload)  # a retransmission of an event already translated
    if tx is None:
        created = first_sight(ctx, payload)
        if created is None:
            return {}
        tx = created
    begin = register_wh(payload.get("meterValue", []), "Transaction.Begin")
    if begin is not None and tx.meter_start_wh is None and not tx.started_at_legacy:
        tx.meter_start_wh = begin  # the Started event, arriving after later events of its transaction
        if payload["eventType"] == "Started":
            tx.started_at = payload["timestamp"]
    tx.charging_state = info.get("chargingState", tx.charging_state)
    meter_values = payload.get("meterValue", [])
    latest = register_wh(meter_values)
    if latest is not None:
        tx.last_register_wh = latest
    ctx.touch()

    token_tag = to_id_tag(ctx, payload["idToken"]) if "idToken" in payload else None
    if tx.id_tag is None:
        tx.id_tag = token_tag or remote_start_tag(ctx, tx)
        if "idToken" in payload:
            tx.id_token_type = payload["idToken"]["type"]
    if not tx.started_at_legacy and tx.id_tag is not None:
        yield from start_at_legacy(ctx, tx)

    if payload["eventType"] == "Ended":
        return (yield from end(ctx, tx, payload, token_tag))
    reply = yield from update(ctx, tx, payload, token_tag)
    # Only now is the event translated: a proxy that dies before this point translates it again when the
    # charger retransmits it, rather than taking the retransmission for a duplicate.
    tx.seq_no = max(tx.seq_no, payload["seqNo"])
    ctx.touch()
    return reply


def fills_gap(tx: Transaction, payload: dict[str, Any]) -> bool:
    """Whether an event at or below the highest seqNo translated still brings what StartTransaction waits for.

    Such an event arrived late (a charger's queue delivered it after later ones), it is no retransmission:
    a translated event with an idToken leaves its transaction with an idTag, and a Started event with its
    Transaction.Begin register. Taking it for a duplicate would leave the transaction unbilled.
    """
    if tx.started_at_legacy:
        return False
    if "idToken" in payload and tx.id_tag is None:
        return True
    return tx.meter_start_wh is None and register_wh(payload.get("meterValue", []), "Transaction.Begin") is not None


def update(
    ctx: Context, tx: Transaction, payload: dict[str, Any], token_tag: str | None
) -> Generator[Request, Any, dict[str, Any]]:
    """A Started or Updated event: meter values and charging-state changes for the legacy."""
    meter_values = payload.get("meterValue", [])

    if payload["eventType"] == "Updated" and meter_values:
        converted = to_meter_values_16(ctx, meter_values)
        if converted and tx.legacy_id is not None:
            yield Request(
                "MeterValues",
                {"connectorId": tx.connector_id, "transactionId": tx.legacy_id, "meterValue": converted},
            )
        elif converted:
            tx.buffered_meter_values = (tx.buffered_meter_values + converted)[-MAX_BUFFERED_METER_VALUES:]
    yield from status_changes(ctx, tx.connector_id, payload["timestamp"])
    if token_tag is not None and token_tag != tx.id_tag:
        # Another token shown during the transaction (e.g. to stop it): a 1.6 charger authorizes it first.
        answer = yield Request("Authorize", {"idTag": token_tag})
        return {"idTokenInfo": to_id_token_info(answer["idTagInfo"])}
    return reply_for(tx, payload)


def first_sight(ctx: Context, payload: dict[str, Any]) -> Transaction | None:
    """Record a transaction the state does not know yet; None if the event cannot be placed."""
    info = payload["transactionInfo"]
    if "evse" not in payload:
        # 2.0.1 sends evse only in the first event of a transaction; without it there is no connector.
        ctx.lossy("TransactionEvent", f"transaction {info['transactionId']} unknown and no evse given")
        return None
    if payload["eventType"] != "Started":
        ctx.lossy(
            "TransactionEvent", f"transaction {info['transactionId']} first seen in {payload['eventType']}"
        )
        # Its Started event went through a proxy whose state was lost (killed while Redis was away): the
        # legacy may hold the transaction open already, and will now get a second one.
        ctx.uncertain(
            "StartTransaction",
            f"transaction {info['transactionId']} first seen in its {payload['eventType']} event: its start was "
            "translated before this proxy's state was lost; the legacy may hold it open already",
        )
    evse = payload["evse"]
    if evse["id"] == 0:
        raise PropertyConstraintViolation("evse.id: 0 is the whole station; a transaction runs on an EVSE (id > 0)")
    meter_values = payload.get("meterValue", [])
    tx = Transaction(
        transaction_id=info["transactionId"],
        evse_id=evse["id"],
        connector_id=flat_connector(ctx, evse["id"], evse.get("connectorId")),
        started_at=payload["timestamp"],
        meter_start_wh=register_wh(meter_values, "Transaction.Begin"),
        remote_start_id=info.get("remoteStartId"),
        reservation_id=payload.get("reservationId"),
    )
    ctx.state.on_transaction_seen(tx)
    ctx.touch()
    return tx


def remote_start_tag(ctx: Context, tx: Transaction) -> str | None:
    """The idTag of the legacy's RemoteStartTransaction that this transaction answers, if any."""
    if tx.remote_start_id is None:
        return None
    remote = ctx.state.remote_starts.pop(tx.remote_start_id, None)
    return remote.id_tag if remote else None


def start_at_legacy(ctx: Context, tx: Transaction) -> Generator[Request, Any, None]:
    assert tx.id_tag is not None
    meter_start = tx.meter_start_wh
    if meter_start is None:
        meter_start = tx.last_register_wh or 0
        ctx.lossy(
            "TransactionEvent", "no Transaction.Begin energy register: meterStart from the last reading"
        )
    request: dict[str, Any] = {
        "connectorId": tx.connector_id,
        "idTag": tx.id_tag,
        "meterStart": meter_start,
        "timestamp": tx.started_at,
    }
    if tx.reservation_id is not None:
        request["reservationId"] = tx.reservation_id
    if tx.start_requests:
        # OCPP 1.6 has no way to ask whether a transaction exists: the earlier StartTransaction's answer was
        # never recorded, so the legacy may now open this transaction a second time.
        ctx.uncertain(
            "StartTransaction",
            f"transaction {tx.transaction_id} on connector {tx.connector_id} (idTag {tx.id_tag}): StartTransaction "
            f"sent again after {tx.start_requests} unanswered; the legacy may hold it twice",
        )
    tx.start_requests += 1
    ctx.touch()  # persisted before the StartTransaction is sent
    try:
        answer = yield Request("StartTransaction", request)
    except PeerRefused:
        tx.start_requests -= 1  # a CALLERROR: the legacy holds no transaction (a timeout leaves it uncertain)
        ctx.touch()
        raise
    tx.start_requests = 0
    buffered = tx.buffered_meter_values
    ctx.state.on_transaction_started(tx, answer["transactionId"], answer["idTagInfo"])
    ctx.touch()
    if buffered:
        yield Request(
            "MeterValues",
            {
                "connectorId": tx.connector_id,
                "transactionId": answer["transactionId"],
                "meterValue": buffered,
            },
        )


def end(
    ctx: Context, tx: Transaction, payload: dict[str, Any], token_tag: str | None
) -> Generator[Request, Any, dict[str, Any]]:
    reply: dict[str, Any] = {}
    if tx.legacy_id is not None:
        meter_values = payload.get("meterValue", [])
        meter_stop = register_wh(meter_values, "Transaction.End")
        if meter_stop is None:
            meter_stop = tx.last_register_wh if tx.last_register_wh is not None else tx.meter_start_wh or 0
            ctx.lossy(
                "TransactionEvent", "no Transaction.End energy register: meterStop from the last reading"
            )
        stop: dict[str, Any] = {
            "transactionId": tx.legacy_id,
            "meterStop": meter_stop,
            "timestamp": payload["timestamp"],
            "reason": tx.stop_reason_16 or stop_reason_16(ctx, payload["transactionInfo"].get("stoppedReason")),
        }
        if token_tag is not None:
            stop["idTag"] = token_tag
        transaction_data = to_meter_values_16(ctx, meter_values, UNITS_16_STOP_TRANSACTION)
        if transaction_data:
            stop["transactionData"] = transaction_data
        answer = yield Request("StopTransaction", stop)
        if "idTagInfo" in answer and token_tag is not None:
            reply["idTokenInfo"] = to_id_token_info(answer["idTagInfo"])
    elif token_tag is not None:
        ctx.lossy("TransactionEvent", "transaction ended before the legacy started it")
    ctx.state.on_transaction_ended(tx)
    ctx.touch()
    yield from status_changes(ctx, tx.connector_id, payload["timestamp"])
    if token_tag is not None and "idTokenInfo" not in reply and tx.id_tag_info is not None:
        reply["idTokenInfo"] = to_id_token_info(tx.id_tag_info)
    return reply


def reply_for(tx: Transaction, payload: dict[str, Any]) -> dict[str, Any]:
    """TransactionEventResponse: idTokenInfo when the event carried an idToken (2.0.1 E01/E02)."""
    if "idToken" in payload and tx.id_tag_info is not None:
        return {"idTokenInfo": to_id_token_info(tx.id_tag_info)}
    return {}


def remote_start(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    request: dict[str, Any] = {"idToken": to_id_token(ctx, payload["idTag"])}
    connector_id = payload.get("connectorId") or None  # 1.6: connectorId > 0 when given
    if connector_id is not None:
        evse = ctx.state.evse_for(connector_id)
        if evse is None:
            return {"status": "Rejected"}
        request["evseId"] = evse[0]
    if "chargingProfile" in payload:
        profile = payload["chargingProfile"]
        if profile["chargingProfilePurpose"] != "TxProfile":  # OCPP 1.6 §6.33
            raise PropertyConstraintViolation(
                "chargingProfile.chargingProfilePurpose: a RemoteStartTransaction profile must be a TxProfile",
                {"field": "chargingProfile.chargingProfilePurpose"},
            )
        if not profile["chargingSchedule"]["chargingSchedulePeriod"]:
            raise OccurrenceConstraintViolation(
                "chargingProfile.chargingSchedule.chargingSchedulePeriod: OCPP 2.0.1 needs at least one period",
                {"field": "chargingProfile.chargingSchedule.chargingSchedulePeriod"},
            )
        request["chargingProfile"] = to_charging_profile_201(profile)
    remote = ctx.state.on_remote_start_requested(payload["idTag"], connector_id)
    request["remoteStartId"] = remote.remote_start_id
    ctx.touch()
    answer = yield Request("RequestStartTransaction", request)
    return {"status": REMOTE_START_STOP_STATUS[answer["status"]]}


def remote_stop(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    tx = ctx.state.by_legacy_id(payload["transactionId"])
    if tx is None:
        return {"status": "Rejected"}  # messages.md §2.8: an id this station has no transaction for
    answer = yield Request("RequestStopTransaction", {"transactionId": tx.transaction_id})
    return {"status": REMOTE_START_STOP_STATUS[answer["status"]]}


CHARGER_CALLS = {
    "TransactionEvent": Disposition(
        "translated",
        ("StartTransaction", "MeterValues", "StatusNotification", "StopTransaction"),
        transaction_event,
        lossy=(
            "StartTransaction waits for an id token; meter values before it are buffered (at most 32) and sent after",
            "meterStart/meterStop are the Transaction.Begin/End energy registers in integer Wh (else the last reading)",
            "stoppedReason with no 1.6 value becomes Other (MasterPass, LocalOutOfCredit: Local; ImmediateReset: "
            "HardReset or SoftReset as the legacy asked)",
            "triggerReason, seqNo, offline, timeSpentCharging, numberOfPhasesUsed, cableMaxCurrent are not sent",
            "the legacy's transactionId is never shown to the station",
            *METER_VALUE_RULES,
        ),
    ),
}
LEGACY_CALLS = {
    "RemoteStartTransaction": Disposition(
        "translated",
        ("RequestStartTransaction",),
        remote_start,
        lossy=("idToken.type is the one the station last showed for the idTag, else Central",),
    ),
    "RemoteStopTransaction": Disposition(
        "translated",
        ("RequestStopTransaction",),
        remote_stop,
        lossy=("a transactionId this station has no transaction for is answered Rejected by the proxy",),
    ),
}

"""The billing ledger check on crafted charger and legacy records, one category at a time."""

from __future__ import annotations

from typing import Any

from peers.ledger import ChargerTransaction, charger_transactions, check
from peers.legacy_csms import LegacyTransaction

T0, T1, T2 = "2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z", "2026-01-01T12:00:00.000Z"


def charger_tx(
    transaction_id: str,
    first: int = 1000,
    last: int = 4000,
    *,
    station_id: str = "CS1",
    id_token: str | None = "TAG0001",
    started: str = T0,
    ended: bool = True,
    undelivered: bool = False,
    ended_at: str | None = None,
) -> ChargerTransaction:
    return ChargerTransaction(
        station_id, transaction_id, 1, id_token, first, last, started, ended, undelivered, ended_at
    )


def legacy_tx(
    legacy_id: int,
    meter_start: int = 1000,
    meter_stop: int | None = 4000,
    *,
    station_id: str = "CS1",
    id_tag: str = "TAG0001",
    started: str = T0,
    meter_values: list[dict[str, Any]] | None = None,
) -> LegacyTransaction:
    return LegacyTransaction(
        transaction_id=legacy_id, station_id=station_id, connector_id=1, id_tag=id_tag,
        meter_start=meter_start, start_timestamp=started, meter_stop=meter_stop,
        meter_values=meter_values or [],
    )  # fmt: skip


def ledger(*txs: LegacyTransaction) -> dict[int, LegacyTransaction]:
    return {tx.transaction_id: tx for tx in txs}


def test_matching_transactions_are_clean() -> None:
    report = check(
        [charger_tx("a"), charger_tx("b", 4000, 6000, started=T1)],
        ledger(legacy_tx(1), legacy_tx(2, 4000, 6000, started=T1)),
    )
    assert report.clean, report.summary()
    assert report.matched == {"a": [1], "b": [2]}
    assert report.counts()["transactions"] == 2


def test_a_transaction_the_legacy_never_got_is_lost() -> None:
    report = check([charger_tx("a"), charger_tx("b", 4000, 6000, started=T1)], ledger(legacy_tx(1)))
    assert report.lost == ["b"]
    assert not report.clean


def test_a_transaction_whose_events_still_wait_in_the_charger_is_undelivered_not_lost() -> None:
    report = check([charger_tx("a", undelivered=True)], {})
    assert (report.lost, report.undelivered) == ([], ["a"])


def test_a_transaction_without_id_token_is_not_billable() -> None:
    report = check([charger_tx("a", id_token=None)], {})
    assert report.clean and report.transactions == 0


def test_two_legacy_transactions_for_one_charger_transaction_are_duplicated() -> None:
    report = check(
        [charger_tx("a")],
        ledger(legacy_tx(1, meter_stop=None), legacy_tx(2)),  # the first StartTransaction's answer was lost
    )
    assert [entry["legacy_ids"] for entry in report.duplicated] == [[1, 2]]
    assert report.duplicated[0]["in_doubt"] == [1]
    assert report.in_doubt_starts == 1
    assert report.open == [] and report.orphaned == []


def test_duplicates_with_meter_values_are_not_in_doubt() -> None:
    mv = [{"timestamp": T0, "sampledValue": [{"value": "2000"}]}]
    report = check([charger_tx("a")], ledger(legacy_tx(1, meter_stop=None, meter_values=mv), legacy_tx(2)))
    assert len(report.duplicated) == 1 and report.in_doubt_starts == 0


def test_other_meter_stop_is_an_energy_mismatch() -> None:
    report = check([charger_tx("a")], ledger(legacy_tx(1, meter_stop=3500)))
    assert report.energy_mismatch == [
        {
            "station_id": "CS1", "transaction_id": "a", "legacy_id": 1,
            "charger_wh": [1000, 4000], "legacy_wh": [1000, 3500],
        }
    ]
    assert report.lost == [] and report.orphaned == []


def test_other_meter_start_is_an_energy_mismatch_not_lost_and_orphaned() -> None:
    report = check([charger_tx("a")], ledger(legacy_tx(1, meter_start=0)))
    assert [entry["legacy_wh"] for entry in report.energy_mismatch] == [[0, 4000]]
    assert report.lost == [] and report.orphaned == []


def test_a_legacy_transaction_no_charger_reported_is_orphaned() -> None:
    report = check(
        [charger_tx("a")],
        ledger(legacy_tx(1), legacy_tx(2, station_id="CS2"), legacy_tx(3, id_tag="TAG0009")),
    )
    assert report.orphaned == [2, 3]


def test_a_second_start_with_other_values_during_the_transaction_is_a_duplicate_billing_other_energy() -> None:
    # a proxy that lost its state started the running transaction again, from its Ended event
    report = check(
        [charger_tx("a", 1000, 4000, started=T0, ended_at=T2)],
        ledger(legacy_tx(1, meter_stop=None), legacy_tx(2, 4000, 4000, started=T1)),
    )
    assert report.orphaned == [] and report.open == []
    assert [entry["legacy_ids"] for entry in report.duplicated] == [[1, 2]]
    assert [entry["legacy_wh"] for entry in report.energy_mismatch] == [[4000, 4000]]


def test_ended_at_the_charger_but_never_stopped_at_the_legacy_is_open() -> None:
    report = check(
        [charger_tx("a"), charger_tx("b", 4000, 5000, started=T1, ended=False)],
        ledger(legacy_tx(1, meter_stop=None), legacy_tx(2, 4000, None, started=T1)),
    )
    assert report.open == ["a"]  # b is still charging: open at the legacy as it should be
    assert report.energy_mismatch == []


def test_same_key_transactions_pair_by_timestamp_then_in_order() -> None:
    # zero-energy sessions share a key; the Started timestamps tell them apart
    chargers = [charger_tx("a", 1000, 1000, started=T0), charger_tx("b", 1000, 1000, started=T2)]
    report = check(chargers, ledger(legacy_tx(7, 1000, 1000, started=T2), legacy_tx(8, 1000, 1000, started=T0)))
    assert report.matched == {"a": [8], "b": [7]}
    assert report.clean


def test_records_of_a_simulated_charger_become_charger_transactions() -> None:
    class Recorded:
        station_id = "CS9"
        transactions: dict[str, dict[str, Any]] = {
            "t1": {"evse_id": 2, "id_token": "TAG0002", "meter_start_wh": 10, "meter_stop_wh": None,
                   "started": T0, "ended": None, "samples_wh": [20, 30]},
            "t2": {"evse_id": 1, "id_token": None, "meter_start_wh": 5, "meter_stop_wh": 5,
                   "started": T1, "ended": T2, "samples_wh": []},
        }  # fmt: skip

        def queued_transaction_ids(self) -> set[str]:
            return {"t1"}

    assert charger_transactions([Recorded()]) == [
        ChargerTransaction("CS9", "t1", 2, "TAG0002", 10, 30, T0, ended=False, undelivered=True),
        ChargerTransaction("CS9", "t2", 1, None, 5, 5, T1, ended=True, undelivered=False, ended_at=T2),
    ]

"""The billing ledger check: do the transactions the 2.0.1 chargers ran match what the legacy CSMS billed?

Any test can end with `check(charger_transactions(chargers), legacy.transactions)`; the report lists every
charger transaction the legacy never got (`lost`), got more than once (`duplicated`), got with other
energy registers (`energy_mismatch`) or never saw stopped although the charger ended it (`open`), and every
legacy transaction no charger reported (`orphaned`).

How a charger transaction is matched to a legacy one: the legacy never sees the 2.0.1 transactionId, so
the key is what the proxy copies into StartTransaction: station id, connector (the simulated chargers
have one connector per EVSE, so the 1.6 connectorId is the evseId), idTag and meterStart. Within one key
a legacy transaction goes to the charger transaction whose Started timestamp it carries (a StartTransaction
sent twice for one transaction carries the same timestamp twice); what is left is paired in order. A second
pass pairs what is still unmatched on station, connector and idTag alone (same timestamp, else in order):
those pairs are the energy mismatches, since their meterStart differs. A legacy transaction still left over
goes to the charger transaction of its station, connector and idTag that was running when it started, if
exactly one was (a second StartTransaction sent with other values, e.g. by a proxy that lost its state);
only what is left after that is orphaned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from peers.legacy_csms import LegacyTransaction

__all__ = ["ChargerTransaction", "LedgerReport", "charger_transactions", "check"]

Key = tuple[Any, ...]


@dataclass(frozen=True)
class ChargerTransaction:
    """One 2.0.1 transaction as its charger ran it."""

    station_id: str
    transaction_id: str
    connector_id: int
    id_token: str | None  # None: never authorized, so never billable at the legacy
    first_register_wh: int
    last_register_wh: int
    started: str | None  # the Started event's timestamp
    ended: bool
    undelivered: bool = False  # some of its events still wait in the charger's queue
    ended_at: str | None = None  # the Ended event's timestamp

    @property
    def billable(self) -> bool:
        return self.id_token is not None


class _ChargerLike(Protocol):
    station_id: str
    transactions: dict[str, dict[str, Any]]

    def queued_transaction_ids(self) -> set[str]: ...


@dataclass
class LedgerReport:
    """What `check` found; `clean` is true when nothing billable went wrong."""

    transactions: int = 0  # billable charger transactions
    matched: dict[str, list[int]] = field(default_factory=dict)  # charger transactionId → legacy ids
    lost: list[str] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)
    energy_mismatch: list[dict[str, Any]] = field(default_factory=list)
    orphaned: list[int] = field(default_factory=list)
    open: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)
    # duplicates whose surplus legacy transactions got nothing after StartTransaction: the signature of a
    # StartTransaction answered while its answer was lost (proxy killed, connection dropped, timed out)
    in_doubt_starts: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.energy_mismatch or self.orphaned or self.open)

    def counts(self) -> dict[str, int]:
        return {
            "transactions": self.transactions,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "energy_mismatch": len(self.energy_mismatch),
            "orphaned": len(self.orphaned),
            "open": len(self.open),
            "undelivered": len(self.undelivered),
            "in_doubt_starts": self.in_doubt_starts,
        }

    def summary(self) -> str:
        """One line per problem, for an assertion message."""
        lines = [f"lost: {tx}" for tx in self.lost]
        lines += [f"duplicated: {entry}" for entry in self.duplicated]
        lines += [f"energy mismatch: {entry}" for entry in self.energy_mismatch]
        lines += [f"orphaned legacy transaction {legacy_id}" for legacy_id in self.orphaned]
        lines += [f"open at the legacy: {tx}" for tx in self.open]
        return "\n".join(lines) or "clean"


def charger_transactions(chargers: Iterable[_ChargerLike]) -> list[ChargerTransaction]:
    """The transactions each simulated `Charger201` ran, from its own record (`Charger201.transactions`)."""
    found = []
    for charger in chargers:
        pending = charger.queued_transaction_ids()
        for transaction_id, record in charger.transactions.items():
            samples = record.get("samples_wh") or []
            last = record["meter_stop_wh"]
            if last is None:
                last = samples[-1] if samples else record["meter_start_wh"]
            found.append(
                ChargerTransaction(
                    station_id=charger.station_id,
                    transaction_id=transaction_id,
                    connector_id=record["evse_id"],
                    id_token=record["id_token"],
                    first_register_wh=record["meter_start_wh"],
                    last_register_wh=last,
                    started=record["started"],
                    ended=record["ended"] is not None,
                    undelivered=transaction_id in pending,
                    ended_at=record["ended"],
                )
            )
    return found


def check(reported: Iterable[ChargerTransaction], legacy: Mapping[int, LegacyTransaction]) -> LedgerReport:
    """Match every billable charger transaction with the legacy's transactions and report every difference."""
    report = LedgerReport()
    billable = sorted((tx for tx in reported if tx.billable), key=lambda tx: (tx.started or "", tx.transaction_id))
    report.transactions = len(billable)
    legacy_txs = sorted(legacy.values(), key=lambda tx: tx.transaction_id)
    matches: dict[str, list[LegacyTransaction]] = defaultdict(list)
    unmatched_legacy = _match(
        billable,
        legacy_txs,
        lambda tx: (tx.station_id, tx.connector_id, tx.id_token, tx.first_register_wh),
        lambda tx: (tx.station_id, tx.connector_id, tx.id_tag, tx.meter_start),
        matches,
    )
    unmatched_charger = [tx for tx in billable if tx.transaction_id not in matches]
    unmatched_legacy = _match(
        unmatched_charger,
        unmatched_legacy,
        lambda tx: (tx.station_id, tx.connector_id, tx.id_token),
        lambda tx: (tx.station_id, tx.connector_id, tx.id_tag),
        matches,
    )
    unmatched_legacy = _attach_by_time(billable, unmatched_legacy, matches)
    report.orphaned = [tx.transaction_id for tx in unmatched_legacy]
    for tx in billable:
        found = matches.get(tx.transaction_id, [])
        report.matched[tx.transaction_id] = [legacy_tx.transaction_id for legacy_tx in found]
        if tx.undelivered:
            report.undelivered.append(tx.transaction_id)
        if not found:
            if not tx.undelivered:
                report.lost.append(tx.transaction_id)
            continue
        if len(found) > 1:
            surplus = [legacy_tx for legacy_tx in found if _untouched(legacy_tx)]
            if len(surplus) == len(found):
                surplus = surplus[1:]
            report.in_doubt_starts += len(surplus)
            report.duplicated.append(
                {
                    "station_id": tx.station_id,
                    "transaction_id": tx.transaction_id,
                    "legacy_ids": [legacy_tx.transaction_id for legacy_tx in found],
                    "in_doubt": [legacy_tx.transaction_id for legacy_tx in surplus],
                }
            )
        stopped = [legacy_tx for legacy_tx in found if legacy_tx.meter_stop is not None]
        billed = stopped[0] if stopped else found[0]
        stop_differs = tx.ended and billed.meter_stop is not None and billed.meter_stop != tx.last_register_wh
        if billed.meter_start != tx.first_register_wh or stop_differs:
            report.energy_mismatch.append(
                {
                    "station_id": tx.station_id,
                    "transaction_id": tx.transaction_id,
                    "legacy_id": billed.transaction_id,
                    "charger_wh": [tx.first_register_wh, tx.last_register_wh if tx.ended else None],
                    "legacy_wh": [billed.meter_start, billed.meter_stop],
                }
            )
        if tx.ended and not stopped and not tx.undelivered:
            report.open.append(tx.transaction_id)
    return report


def _match(
    charger_txs: list[ChargerTransaction],
    legacy_txs: list[LegacyTransaction],
    charger_key: Any,
    legacy_key: Any,
    matches: dict[str, list[LegacyTransaction]],
) -> list[LegacyTransaction]:
    """Add matches by key (same Started timestamp first, then in order); return the legacy ones left."""
    by_key: dict[Key, list[LegacyTransaction]] = defaultdict(list)
    for legacy_tx in legacy_txs:
        by_key[legacy_key(legacy_tx)].append(legacy_tx)
    charger_by_key: dict[Key, list[ChargerTransaction]] = defaultdict(list)
    for tx in charger_txs:
        charger_by_key[charger_key(tx)].append(tx)
    for key, group in charger_by_key.items():
        candidates = by_key.get(key, [])
        for tx in group:
            same_time = [legacy_tx for legacy_tx in candidates if legacy_tx.start_timestamp == tx.started]
            if same_time:
                matches[tx.transaction_id].extend(same_time)
                candidates = [legacy_tx for legacy_tx in candidates if legacy_tx not in same_time]
        for tx in group:
            if tx.transaction_id not in matches and candidates:
                matches[tx.transaction_id].append(candidates.pop(0))
        by_key[key] = candidates
    return sorted((tx for group in by_key.values() for tx in group), key=lambda tx: tx.transaction_id)


def _attach_by_time(
    charger_txs: list[ChargerTransaction],
    legacy_txs: list[LegacyTransaction],
    matches: dict[str, list[LegacyTransaction]],
) -> list[LegacyTransaction]:
    """Give a legacy transaction left over to the charger transaction of its station, connector and idTag that
    was running when it started (a second StartTransaction for it, sent with other values); return the rest."""
    left = []
    for legacy_tx in legacy_txs:
        running = [
            tx for tx in charger_txs
            if (tx.station_id, tx.connector_id, tx.id_token) == (legacy_tx.station_id, legacy_tx.connector_id,
                                                                 legacy_tx.id_tag)
            and tx.started is not None and tx.started <= legacy_tx.start_timestamp <= (tx.ended_at or "~")
        ]  # fmt: skip
        if len(running) == 1:
            matches[running[0].transaction_id].append(legacy_tx)
        else:
            left.append(legacy_tx)
    return left


def _untouched(legacy_tx: LegacyTransaction) -> bool:
    return legacy_tx.meter_stop is None and not legacy_tx.meter_values

"""The translation coverage table, read from the dispatcher's own tables (`cutover coverage` prints it).

For every action of both versions: who sends it, what the proxy does when it arrives (translated to which
actions, answered locally, mirrored for the shadow, or refused with which error), the lossy rules, and —
for a CSMS-to-station 2.0.1 action — which 1.6 actions the proxy translates into it.
"""

from __future__ import annotations

from typing import Any

import orjson

from translators.dispatch import (
    ALL_ACTIONS_16,
    ALL_ACTIONS_201,
    CHARGER_CALLS,
    CSMS_ACTIONS_16,
    LEGACY_CALLS,
    STATION_ACTIONS_201,
)

# Actions the proxy sends of its own accord, and when.
PROXY_ORIGINATED = {"GetBaseReport": "after every accepted BootNotification (device-model cache)"}


def rows() -> dict[str, list[dict[str, Any]]]:
    """One row per action and version, in name order."""
    produced_from: dict[str, list[str]] = {}
    for legacy_action, legacy_disposition in LEGACY_CALLS.items():
        for target in legacy_disposition.targets:
            produced_from.setdefault(target, []).append(legacy_action)
    table: dict[str, list[dict[str, Any]]] = {"ocpp2.0.1": [], "ocpp1.6": []}
    for version, actions, dispositions, senders in (
        ("ocpp2.0.1", ALL_ACTIONS_201, CHARGER_CALLS, STATION_ACTIONS_201),
        ("ocpp1.6", ALL_ACTIONS_16, LEGACY_CALLS, CSMS_ACTIONS_16),
    ):
        for action in sorted(actions):
            disposition = dispositions.get(action)
            row: dict[str, Any] = {
                "action": action,
                "sent_by": ("station" if action in senders else "CSMS")
                if version == "ocpp2.0.1"
                else ("central system" if action in senders else "charge point"),
                "disposition": disposition.kind if disposition else "fallback",
                "targets": list(disposition.targets) if disposition else [],
                "reason": disposition.reason if disposition else "",
                "error": disposition.error.code_for("2.0.1" if version == "ocpp2.0.1" else "1.6")
                if disposition and disposition.kind == "refused"
                else "",
                "lossy": list(disposition.lossy) if disposition else [],
            }
            if action == "DataTransfer":
                row["sent_by"] = "both"
            if version == "ocpp2.0.1":
                row["produced_from"] = sorted(produced_from.get(action, [])) + (
                    [f"the proxy, {PROXY_ORIGINATED[action]}"] if action in PROXY_ORIGINATED else []
                )
            table[version].append(row)
    return table


def summary(table: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    return {
        version: {
            "actions": len(entries),
            "declared": sum(1 for row in entries if row["disposition"] != "fallback"),
            **{
                kind: sum(1 for row in entries if row["disposition"] == kind)
                for kind in ("translated", "local", "mirror-only", "refused")
            },
        }
        for version, entries in table.items()
    }


def as_json() -> str:
    table = rows()
    return orjson.dumps({"summary": summary(table), **table}, option=orjson.OPT_INDENT_2).decode()


def what(row: dict[str, Any]) -> str:
    """One cell saying what the proxy does with the action when it arrives."""
    if row["disposition"] == "refused":
        return f"refused ({row['error']}): {row['reason']}"
    text = row["disposition"]
    if row["targets"]:
        text += " → " + ", ".join(row["targets"])
    if row["reason"]:
        text += f" — {row['reason']}"
    return text


def produced(row: dict[str, Any]) -> str:
    """For a 2.0.1 action a CSMS sends: what makes the proxy send it to a charger."""
    sources = row.get("produced_from", [])
    return "sent for " + ", ".join(sources) if sources else "never sent: no 1.6 message asks for it"


def as_markdown() -> str:
    table = rows()
    counts = summary(table)
    lines = [
        f"OCPP 2.0.1: {counts['ocpp2.0.1']['declared']}/{counts['ocpp2.0.1']['actions']} actions declared; "
        f"OCPP 1.6: {counts['ocpp1.6']['declared']}/{counts['ocpp1.6']['actions']} "
        "(`cutover coverage` prints this from the code).",
        "",
        "| 2.0.1 action (sent by) | what the proxy does | lossy |",
        "| --- | --- | --- |",
    ]
    for row in table["ocpp2.0.1"]:
        cell = what(row) if row["sent_by"] == "station" else f"{produced(row)} (from a charger: {row['error']})"
        lines.append(f"| {row['action']} ({row['sent_by']}) | {cell} | {'; '.join(row['lossy'])} |")
    lines += ["", "| 1.6 action (sent by) | what the proxy does when the legacy CSMS sends it | lossy |"]
    lines += ["| --- | --- | --- |"]
    for row in table["ocpp1.6"]:
        lines.append(f"| {row['action']} ({row['sent_by']}) | {what(row)} | {'; '.join(row['lossy'])} |")
    return "\n".join(lines) + "\n"


def as_text() -> str:
    table = rows()
    counts = summary(table)
    lines = []
    headings = {"ocpp2.0.1": "arriving from a 2.0.1 charger", "ocpp1.6": "arriving from the legacy 1.6 CSMS"}
    for version, heading in headings.items():
        c = counts[version]
        lines.append(
            f"{version}: {c['declared']}/{c['actions']} declared ({c['translated']} translated, {c['local']} local, "
            f"{c['mirror-only']} mirror-only, {c['refused']} refused), {heading}"
        )
        for row in table[version]:
            lines.append(f"  {row['action']:<36} ({row['sent_by']}) {what(row)}")
            if version == "ocpp2.0.1" and row["sent_by"] == "CSMS":
                lines.append(f"  {'':<36}   {produced(row)}")
            for rule in row["lossy"]:
                lines.append(f"  {'':<36}   lossy: {rule}")
        lines.append("")
    return "\n".join(lines)

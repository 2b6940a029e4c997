"""Coverage: every action of both versions has a declared disposition, and the README shows the table."""

from __future__ import annotations

import subprocess
import sys

import orjson

from translators import coverage, readme, schemas
from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS


def test_every_action_of_both_versions_is_declared() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "coverage", "--format", "json"], capture_output=True, text=True, check=True
    )
    table = orjson.loads(result.stdout)
    assert table["summary"]["ocpp2.0.1"]["actions"] == table["summary"]["ocpp2.0.1"]["declared"] == 64
    assert table["summary"]["ocpp1.6"]["actions"] == table["summary"]["ocpp1.6"]["declared"] == 39
    assert not [
        row for version in ("ocpp2.0.1", "ocpp1.6") for row in table[version] if row["disposition"] == "fallback"
    ]


def test_the_tables_cover_exactly_the_schema_actions() -> None:
    compiled = schemas.load()
    assert set(CHARGER_CALLS) == compiled.actions["2.0.1"]
    assert set(LEGACY_CALLS) == compiled.actions["1.6"]


def test_dispositions_are_consistent() -> None:
    compiled = schemas.load()
    for calls, other in ((CHARGER_CALLS, "1.6"), (LEGACY_CALLS, "2.0.1")):
        for action, disposition in calls.items():
            if disposition.kind == "refused":
                assert disposition.handler is None and disposition.reason, action
                continue
            assert disposition.handler is not None, action
            if disposition.kind == "translated":
                assert disposition.targets, action
                for target in disposition.targets:
                    assert compiled.knows(other, target) or "Plug & Charge" in target, (action, target)  # type: ignore[arg-type]
            else:
                assert disposition.reason, action  # local and mirror-only say why


def test_readme_embeds_the_current_table() -> None:
    text = readme.README.read_text()
    assert readme.with_coverage(text) == text, "README coverage table is stale: run `make readme`"
    assert coverage.as_markdown() in text

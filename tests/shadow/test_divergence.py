"""The divergence engine: what counts, what does not, and how differences are classified."""

from __future__ import annotations

import pytest

from shadow.divergence import Answer, Divergence, compare


def result(payload: dict[str, object]) -> Answer:
    return Answer(payload=payload)


def test_identical_answers_and_ignored_fields_do_not_count() -> None:
    live = result({"idTokenInfo": {"status": "Accepted"}, "statusInfo": {"reasonCode": "x"}})
    shadow = result({"idTokenInfo": {"status": "Accepted"}, "customData": {"vendorId": "v"}})
    assert compare(live, shadow) == []


def test_timestamps_within_the_tolerance_do_not_count() -> None:
    live = result({"currentTime": "2026-11-24T19:43:22.853Z", "interval": 300, "status": "Accepted"})
    near = result({"currentTime": "2026-11-24T19:43:25.000+00:00", "interval": 300, "status": "Accepted"})
    far = result({"currentTime": "2026-11-24T20:43:25.000Z", "interval": 300, "status": "Accepted"})
    assert compare(live, near) == []
    assert compare(live, far) == [
        Divergence("value_mismatch", "currentTime", "2026-11-24T19:43:22.853Z", "2026-11-24T20:43:25.000Z")
    ]


def test_lists_of_plain_values_are_unordered() -> None:
    assert compare(result({"evseId": [1, 2]}), result({"evseId": [2, 1]})) == []


@pytest.mark.parametrize(
    ("live", "shadow", "expected"),
    [
        ({"idTokenInfo": {"status": "Accepted"}}, {"idTokenInfo": {"status": "Invalid"}},
         [Divergence("status_mismatch", "idTokenInfo.status", "Accepted", "Invalid")]),
        ({"interval": 300}, {"interval": 60}, [Divergence("value_mismatch", "interval", 300, 60)]),
        ({"idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": "2027-01-01T00:00:00Z"}},
         {"idTokenInfo": {"status": "Accepted"}},
         [Divergence("missing_field", "idTokenInfo.cacheExpiryDateTime", "2027-01-01T00:00:00Z", None)]),
        ({}, {"idTokenInfo": {"status": "Accepted"}},
         [Divergence("extra_field", "idTokenInfo", None, {"status": "Accepted"})]),
    ],
)  # fmt: skip
def test_result_differences_are_classified(
    live: dict[str, object], shadow: dict[str, object], expected: list[Divergence]
) -> None:
    assert compare(result(live), result(shadow)) == expected


def test_errors_against_results() -> None:
    shadow = result({"status": "Accepted"})
    (found,) = compare(Answer(error="InternalError", description="legacy down"), shadow)
    assert found.kind == "error_vs_result" and found.live == {"error": "InternalError", "description": "legacy down"}
    assert compare(Answer(error="NotSupported"), shadow)[0].kind == "untranslatable"
    assert compare(Answer(error="FormatViolation"), Answer(error="FormatViolation"))[0].kind == "schema_violation"
    assert compare(result({"status": "Accepted"}), None)[0].kind == "shadow_timeout"
    assert compare(Answer(error="GenericError"), Answer(error="GenericError")) == []


async def test_a_station_group_goes_to_its_own_backend() -> None:
    from typing import Any

    from shadow.processor import RoutedBackend

    class Fixed:
        def __init__(self, status: str) -> None:
            self.status = status

        async def answer(self, station_id: str, action: str, payload: dict[str, Any], now: str) -> Answer | None:
            return Answer(payload={"status": self.status})

        def transactions(self, station_id: str) -> list[Any]:
            return [self.status]

    routed = RoutedBackend(["KEBA-*", "ABB-1"], Fixed("replayed"), Fixed("reference"))
    assert (await routed.answer("KEBA-7", "Heartbeat", {}, "")) == Answer(payload={"status": "replayed"})
    assert (await routed.answer("ABB-12", "Heartbeat", {}, "")) == Answer(payload={"status": "reference"})
    assert routed.transactions("ABB-1") == ["replayed"]

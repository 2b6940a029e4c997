"""Energy registers and 1.6 value strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from translators import meter_values
from translators.meter_values import decimal_string, register_wh


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("1500.0"), "1500"), (Decimal("0"), "0"), (Decimal("1E+3"), "1000"), (Decimal("0.00012"), "0.00012")],
)
def test_decimal_strings_never_use_exponents(value: Decimal, text: str) -> None:
    assert decimal_string(value) == text


def sample(value: float, context: str, **extra: object) -> dict[str, object]:
    return {"value": value, "context": context, **extra}


def test_register_prefers_the_context_and_the_latest_reading() -> None:
    readings = [
        {"timestamp": "2026-01-01T00:00:01Z", "sampledValue": [sample(1, "Transaction.Begin")]},
        {"timestamp": "2026-01-01T00:00:09Z", "sampledValue": [sample(9, "Transaction.End")]},
        {"timestamp": "2026-01-01T00:00:05Z", "sampledValue": [sample(5, "Transaction.End")]},
    ]
    assert register_wh(readings, "Transaction.Begin") == 1
    assert register_wh(readings, "Transaction.End") == 9
    assert register_wh(readings, "Sample.Periodic") == 9  # falls back to the latest register


def test_register_ignores_phases_other_measurands_and_non_energy_units() -> None:
    readings = [
        {
            "timestamp": "2026-01-01T00:00:01Z",
            "sampledValue": [
                sample(7, "Transaction.End", phase="L1"),
                sample(7, "Transaction.End", measurand="Power.Active.Import"),
                sample(7, "Transaction.End", unitOfMeasure={"unit": "varh"}),
                sample(0.5, "Transaction.End", unitOfMeasure={"unit": "kWh", "multiplier": 1}),
            ],
        }
    ]
    assert register_wh(readings, "Transaction.End") == 5000


@settings(max_examples=500)
@given(
    st.one_of(st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False),
              st.floats(-1e6, 1e6).map(lambda x: round(x, 3))),
    st.sampled_from([None, 0, 1, -3]),
)  # fmt: skip
def test_the_fast_value_string_agrees_with_decimal_arithmetic(value: float, multiplier: int | None) -> None:
    sampled: dict[str, Any] = {"value": value}
    if multiplier is not None:
        sampled["unitOfMeasure"] = {"multiplier": multiplier}
    assert meter_values.value_string(sampled) == meter_values.decimal_string(meter_values.scaled(sampled))

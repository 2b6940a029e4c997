"""Meter values (2.0.1 functional block J): MeterValues and the SampledValue conversion 2.0.1 → 1.6."""

from __future__ import annotations

from collections.abc import Generator
from decimal import Decimal
from typing import Any

import orjson

from translators.availability import flat_connector
from translators.bridge import Context, Disposition, Request

ENERGY_REGISTER = "Energy.Active.Import.Register"

# OCPP 1.6 §7.31 Measurand; 2.0.1 adds Energy.*.Net and Energy.Apparent.* which have no 1.6 value.
MEASURANDS_16 = frozenset(
    {
        "Energy.Active.Export.Register", "Energy.Active.Import.Register", "Energy.Reactive.Export.Register",
        "Energy.Reactive.Import.Register", "Energy.Active.Export.Interval", "Energy.Active.Import.Interval",
        "Energy.Reactive.Export.Interval", "Energy.Reactive.Import.Interval", "Power.Active.Export",
        "Power.Active.Import", "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import",
        "Power.Factor", "Current.Import", "Current.Export", "Current.Offered", "Voltage", "Frequency",
        "Temperature", "SoC", "RPM",
    }
)  # fmt: skip
# OCPP 1.6 §7.45 UnitOfMeasure as the `ocpp` package schemas spell it, per message (they differ).
UNITS_16_METER_VALUES = frozenset(
    {"Wh", "kWh", "varh", "kvarh", "W", "kW", "VA", "kVA", "var", "kvar", "A", "V", "K", "Celcius", "Celsius",
     "Fahrenheit", "Percent", "Hertz"}
)  # fmt: skip
UNITS_16_STOP_TRANSACTION = UNITS_16_METER_VALUES - {"Hertz"}
# 2.0.1 units (Part 2 Appendix units_of_measure) spelled differently in 1.6.
UNIT_201_TO_16 = {"Celsius": "Celsius", "Hz": "Hertz", "Percent": "Percent", "deg": None}
# Readings beyond this are corrupt (and beyond what JSON integers carry safely).
MAX_REGISTER_WH = Decimal(2**53)
# A multiplier beyond the SI prefixes (quecto to quetta, 10^±30) is a corrupt sample, not a unit: applied, it
# overflows Decimal or makes a value string of up to a million digits.
MAX_MULTIPLIER = 30
# Energy units and their factor to Wh.
WH_FACTOR = {"Wh": Decimal(1), "kWh": Decimal(1000)}


# Written once, listed for every action that carries meter values.
METER_VALUE_RULES = (
    "values become decimal strings with the unit multiplier applied (never exponent notation)",
    "measurands Energy.*.Net and Energy.Apparent.* and units 1.6 lacks are dropped",
    "a signed meter value is an extra sampled value of format SignedData holding the JSON object",
    "a sample whose unit multiplier is beyond the SI prefixes (±30) is corrupt and dropped",
)


def scaled(sampled: dict[str, Any]) -> Decimal:
    """The sampled value with its unit multiplier applied (value × 10^multiplier)."""
    multiplier = sampled.get("unitOfMeasure", {}).get("multiplier", 0)
    return Decimal(str(sampled["value"])).scaleb(multiplier)


def corrupt(sampled: dict[str, Any]) -> bool:
    return abs(sampled.get("unitOfMeasure", {}).get("multiplier", 0)) > MAX_MULTIPLIER


def energy_wh(sampled: dict[str, Any]) -> Decimal | None:
    """An energy register sample in Wh, or None when it is not the total active import register in Wh/kWh."""
    if sampled.get("measurand", ENERGY_REGISTER) != ENERGY_REGISTER or "phase" in sampled or corrupt(sampled):
        return None
    factor = WH_FACTOR.get(sampled.get("unitOfMeasure", {}).get("unit", "Wh"))
    if factor is None:
        return None
    wh = scaled(sampled) * factor
    return wh if abs(wh) <= MAX_REGISTER_WH else None  # beyond any meter: a corrupt reading, not a register


def register_wh(meter_values: list[dict[str, Any]], context: str | None = None) -> int | None:
    """The energy register reading (integer Wh) of the latest matching sample, preferring `context`."""
    best: tuple[str, int] | None = None
    fallback: tuple[str, int] | None = None
    for meter_value in meter_values:
        for sampled in meter_value["sampledValue"]:
            wh = energy_wh(sampled)
            if wh is None:
                continue
            reading = (meter_value["timestamp"], int(wh.to_integral_value()))
            if context is None or sampled.get("context") == context:
                if best is None or reading[0] >= best[0]:
                    best = reading
            elif fallback is None or reading[0] >= fallback[0]:
                fallback = reading
    chosen = best or fallback
    return None if chosen is None else chosen[1]


def decimal_string(value: Decimal) -> str:
    """A plain decimal string, never exponent notation (1.6 SampledValue.value is a string)."""
    text = format(value.normalize(), "f")
    return text


def value_string(sampled: dict[str, Any]) -> str:
    """`decimal_string(scaled(sampled))`, without Decimal arithmetic in the common case (no multiplier, a
    number whose shortest repr has no exponent): that is most of a periodic meter-value frame's cost."""
    value = sampled["value"]
    if sampled.get("unitOfMeasure", {}).get("multiplier", 0) == 0 and value:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
            return str(int(value))
        if isinstance(value, float) and not value.is_integer():
            text = repr(value)
            if "e" not in text and "n" not in text:  # no exponent, not inf/nan
                return text
    return decimal_string(scaled(sampled))


def to_sampled_value_16(ctx: Context, sampled: dict[str, Any], units: frozenset[str]) -> list[dict[str, Any]]:
    """1.6 SampledValues for one 2.0.1 SampledValueType (none if it has no 1.6 form, two if signed)."""
    measurand = sampled.get("measurand", ENERGY_REGISTER)
    if measurand not in MEASURANDS_16:
        ctx.lossy("MeterValues", f"measurand {measurand} has no OCPP 1.6 counterpart")
        return []
    converted: dict[str, Any] = {}
    unit_of_measure = sampled.get("unitOfMeasure", {})
    unit = unit_of_measure.get("unit", "Wh")
    unit_16 = unit if unit in units else UNIT_201_TO_16.get(unit)
    if unit_16 not in units:
        ctx.lossy("MeterValues", f"unit {unit} has no OCPP 1.6 counterpart")
        return []
    if corrupt(sampled):
        ctx.lossy("MeterValues", f"unitOfMeasure.multiplier {unit_of_measure['multiplier']}: a corrupt sample")
        return []
    converted["value"] = value_string(sampled)
    for key in ("context", "phase", "location"):
        if key in sampled:
            converted[key] = sampled[key]
    converted["format"] = "Raw"
    converted["measurand"] = measurand
    converted["unit"] = unit_16
    result = [converted]
    if "signedMeterValue" in sampled:
        # OCA "Signed Meter Values in OCPP" §3.2.1: 1.6 carries the signed object as a JSON string.
        signed = dict(converted, format="SignedData")
        signed["value"] = orjson.dumps(sampled["signedMeterValue"]).decode()
        result.append(signed)
    return result


def to_meter_values_16(
    ctx: Context, meter_values: list[dict[str, Any]], units: frozenset[str] = UNITS_16_METER_VALUES
) -> list[dict[str, Any]]:
    """1.6 MeterValue entries for 2.0.1 ones; entries left without a sampled value are dropped."""
    converted = []
    for meter_value in meter_values:
        sampled = [s for value in meter_value["sampledValue"] for s in to_sampled_value_16(ctx, value, units)]
        if sampled:
            converted.append({"timestamp": meter_value["timestamp"], "sampledValue": sampled})
    return converted


def meter_values(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    converted = to_meter_values_16(ctx, payload["meterValue"])
    if not converted:
        return {}
    connector_id = flat_connector(ctx, payload["evseId"], None)  # a new connector is persisted
    yield Request("MeterValues", {"connectorId": connector_id, "meterValue": converted})
    return {}


CHARGER_CALLS = {
    "MeterValues": Disposition("translated", ("MeterValues",), meter_values, lossy=METER_VALUE_RULES),
}

LEGACY_CALLS: dict[str, Disposition] = {}

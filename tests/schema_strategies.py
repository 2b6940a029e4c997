"""Hypothesis strategies that generate payloads from the OCA JSON schemas (the subset of draft-04/06 the
OCA schemas use: objects, arrays, strings with maxLength and date-time format, integers, numbers with
multipleOf, booleans, enums and local $refs). Small and fast; jsonschema-rs remains the judge of validity."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from translators import schemas
from translators.schemas import ocpp_package_dir

VERSION_DIR = {"2.0.1": ("v201", "Request"), "1.6": ("v16", "")}
TEXT = string.ascii_letters + string.digits + " -_.:/"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(TEXT, max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def schema_of(version: str, action: str, kind: str) -> dict[str, Any]:
    folder, request_suffix = VERSION_DIR[version]
    suffix = "Response" if kind == "response" else request_suffix
    return json.loads((ocpp_package_dir() / folder / "schemas" / f"{action}{suffix}.json").read_text())  # type: ignore[no-any-return]


def timestamps() -> st.SearchStrategy[str]:
    moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
    return moments.map(lambda moment: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def strategy(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return strategy(root["definitions"][name], root)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {key: strategy(properties[key], root) for key in properties if key in required},
            optional={
                key: strategy(value, root)
                for key, value in properties.items()
                if key not in required and key != "customData"
            },
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(
            strategy(schema["items"], root), min_size=low, max_size=min(schema.get("maxItems", low + 3), low + 3)
        )
    if kind == "string":
        if schema.get("format") == "date-time":
            return timestamps()
        return st.text(TEXT, min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30))
    if kind == "integer":
        return st.integers(schema.get("minimum", 0), schema.get("maximum", 100_000))
    if kind == "number":
        if "multipleOf" in schema:  # 1.6 limits: one decimal
            return st.integers(0, 10_000).map(lambda tenths: round(tenths / 10, 1))
        return st.integers(-100_000, 100_000).map(lambda n: n / 8)  # exact binary fractions
    if kind == "boolean":
        return st.booleans()
    return JSON_VALUES  # e.g. 2.0.1 DataTransfer data: any JSON


def payloads(version: str, action: str, kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Payloads of an action's request or response that the OCA schema (through jsonschema-rs) accepts."""
    schema = schema_of(version, action, kind)
    compiled = schemas.load()
    return strategy(schema, schema).filter(lambda p: compiled.is_valid(version, kind, action, p))  # type: ignore[arg-type]

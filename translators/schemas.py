"""The OCA JSON schemas of both versions (as shipped in the `ocpp` package), compiled once.

`load()` compiles every request and response schema with jsonschema-rs; call it at start-up, never
inside the event loop. `validate()` raises the `OcppError` whose code OCPP-J prescribes for the first
violation, with a message naming the field.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs

from translators.rpc import (
    V16,
    V201,
    FormatViolation,
    NotImplementedAction,
    OccurrenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    TypeConstraintViolation,
    Version,
)

Kind = Literal["request", "response"]

# OCPP 2.0.1 Part 4 §4.3 / OCPP-J 1.6 §4.2.3: which CALLERROR a schema violation is.
ERROR_FOR_KEYWORD: dict[str, type[OcppError]] = {
    "Type": TypeConstraintViolation,
    "Required": OccurrenceConstraintViolation,
    "MinItems": OccurrenceConstraintViolation,
    "MaxItems": OccurrenceConstraintViolation,
    "AdditionalProperties": FormatViolation,
    "AdditionalItems": FormatViolation,
    "MaxLength": PropertyConstraintViolation,
    "MinLength": PropertyConstraintViolation,
    "Enum": PropertyConstraintViolation,
    "Format": PropertyConstraintViolation,
    "Pattern": PropertyConstraintViolation,
    "Minimum": PropertyConstraintViolation,
    "Maximum": PropertyConstraintViolation,
    "ExclusiveMinimum": PropertyConstraintViolation,
    "ExclusiveMaximum": PropertyConstraintViolation,
    "MultipleOf": PropertyConstraintViolation,
}
PRIORITY = (
    FormatViolation,
    OccurrenceConstraintViolation,
    TypeConstraintViolation,
    PropertyConstraintViolation,
)


class Schemas:
    """Compiled validators for every action of both versions, keyed by (version, kind, action)."""

    def __init__(self) -> None:
        self._validators: dict[tuple[Version, Kind, str], Any] = {}
        self.actions: dict[Version, frozenset[str]] = {}
        for version, folder, request_suffix in ((V16, "v16", ""), (V201, "v201", "Request")):
            actions = set()
            for entry in sorted((ocpp_package_dir() / folder / "schemas").iterdir()):
                name = entry.name
                if not name.endswith(".json"):
                    continue
                stem = name[: -len(".json")]
                schema = json.loads(entry.read_text(encoding="utf-8"))
                kind: Kind
                if stem.endswith("Response"):
                    action, kind = stem[: -len("Response")], "response"
                elif stem.endswith(request_suffix):
                    action, kind = stem[: len(stem) - len(request_suffix)], "request"
                else:
                    continue
                self._validators[(version, kind, action)] = jsonschema_rs.validator_for(
                    schema, validate_formats=True
                )
                actions.add(action)
            self.actions[version] = frozenset(actions)

    def knows(self, version: Version, action: str) -> bool:
        return action in self.actions[version]

    def is_valid(self, version: Version, kind: Kind, action: str, payload: dict[str, Any]) -> bool:
        validator = self._validators.get((version, kind, action))
        return validator is not None and validator.is_valid(payload)

    def validate(self, version: Version, kind: Kind, action: str, payload: dict[str, Any]) -> None:
        """Return if `payload` is a valid `action` `kind` of `version`; else raise the OCPP error for it."""
        validator = self._validators.get((version, kind, action))
        if validator is None:
            raise NotImplementedAction(f"{action} is not an OCPP {version} action")
        if validator.is_valid(payload):
            return
        # The most structural violation names the error: a payload of the wrong shape (unexpected fields)
        # is a FormatViolation even when it also misses required fields.
        error = min(
            validator.iter_errors(payload),
            key=lambda e: PRIORITY.index(ERROR_FOR_KEYWORD.get(type(e.kind).__name__, FormatViolation)),
        )
        keyword = type(error.kind).__name__
        path = ".".join(str(p) for p in error.instance_path) or "payload"
        error_class = ERROR_FOR_KEYWORD.get(keyword, FormatViolation)
        raise error_class(
            f"{action}{'Request' if kind == 'request' and version == V201 else ''}"
            f"{'Response' if kind == 'response' else ''}: {path}: {error.message}",
            {"field": path, "keyword": keyword},
        )


def ocpp_package_dir() -> Path:
    """Where the `ocpp` package's files are, found without importing it (its __init__ pulls in asyncio)."""
    spec = importlib.util.find_spec("ocpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `ocpp` package (OCA JSON schemas) is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


_SCHEMAS: Schemas | None = None


def load() -> Schemas:
    """The compiled schemas, compiling them on the first call (do that at start-up)."""
    global _SCHEMAS
    if _SCHEMAS is None:
        _SCHEMAS = Schemas()
    return _SCHEMAS

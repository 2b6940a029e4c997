"""The divergence engine: what the charger really got against what the shadow 2.0.1 backend answered.

Pure code. `compare()` normalises what must not count (timestamps within a tolerance, statusInfo and
customData, the order of lists of plain values) and classifies each remaining difference with its field
path. `Answer` is one side: a CALLRESULT payload, or a CALLERROR code and description.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

KINDS = (
    "status_mismatch",
    "value_mismatch",
    "missing_field",
    "extra_field",
    "error_vs_result",
    "shadow_timeout",
    "untranslatable",
    "schema_violation",
    "transaction_mismatch",
    "missing_transaction",
    "orphaned_transaction",
)
# Informative fields a CSMS fills as it likes; they never decide anything for the station.
IGNORED_FIELDS = frozenset({"customData", "statusInfo"})
# CALLERROR codes that mean the charger's own frame was malformed (either side refusing it is right).
SCHEMA_ERRORS = frozenset(
    {
        "FormatViolation",
        "FormationViolation",
        "PropertyConstraintViolation",
        "TypeConstraintViolation",
        "OccurrenceConstraintViolation",
        "OccurenceConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "MessageTypeNotSupported",
    }
)
# CALLERROR codes with which the proxy says it could not carry the CALL to the legacy.
UNTRANSLATABLE_ERRORS = frozenset({"NotSupported", "NotImplemented"})
DEFAULT_TIME_TOLERANCE = 120.0  # seconds; clocks of two CSMSs and the shadow's processing lag


@dataclass(frozen=True)
class Answer:
    payload: dict[str, Any] | None = None  # a CALLRESULT
    error: str | None = None  # a CALLERROR code
    description: str = ""

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def as_record(self) -> dict[str, Any]:
        return {"error": self.error, "description": self.description} if self.is_error else {"result": self.payload}


@dataclass(frozen=True)
class Divergence:
    kind: str
    path: str
    live: Any
    shadow: Any


def compare(live: Answer, shadow: Answer | None, tolerance: float = DEFAULT_TIME_TOLERANCE) -> list[Divergence]:
    """The differences that matter between the live answer and the shadow's (None: the shadow never answered)."""
    if shadow is None:
        return [Divergence("shadow_timeout", "", live.as_record(), None)]
    if live.is_error and live.error in SCHEMA_ERRORS:
        return [Divergence("schema_violation", "", live.as_record(), shadow.as_record())]
    if live.is_error != shadow.is_error:
        kind = "untranslatable" if live.is_error and live.error in UNTRANSLATABLE_ERRORS else "error_vs_result"
        return [Divergence(kind, "", live.as_record(), shadow.as_record())]
    if live.is_error:
        return (
            [] if live.error == shadow.error else [Divergence("value_mismatch", "errorCode", live.error, shadow.error)]
        )
    found: list[Divergence] = []
    diff(live.payload or {}, shadow.payload or {}, "", tolerance, found)
    return found


def diff(live: Any, shadow: Any, path: str, tolerance: float, found: list[Divergence]) -> None:
    if isinstance(live, dict) and isinstance(shadow, dict):
        for key in sorted(set(live) | set(shadow)):
            if key in IGNORED_FIELDS:
                continue
            where = f"{path}.{key}" if path else key
            if key not in shadow:
                found.append(Divergence("missing_field", where, live[key], None))
            elif key not in live:
                found.append(Divergence("extra_field", where, None, shadow[key]))
            else:
                diff(live[key], shadow[key], where, tolerance, found)
        return
    if isinstance(live, list) and isinstance(shadow, list):
        if all(not isinstance(v, dict | list) for v in live + shadow):
            live, shadow = sorted(live, key=repr), sorted(shadow, key=repr)  # unordered lists of plain values
        if len(live) != len(shadow):
            found.append(Divergence("value_mismatch", f"{path}[]", len(live), len(shadow)))
            return
        for index, (one, other) in enumerate(zip(live, shadow, strict=True)):
            diff(one, other, f"{path}[{index}]", tolerance, found)
        return
    if live == shadow or same_moment(live, shadow, tolerance):
        return
    kind = "status_mismatch" if path.rsplit(".", 1)[-1] == "status" else "value_mismatch"
    found.append(Divergence(kind, path, live, shadow))


def same_moment(one: Any, other: Any, tolerance: float) -> bool:
    """Both are date-time strings no further apart than `tolerance` seconds."""
    if not (isinstance(one, str) and isinstance(other, str) and "T" in one and "T" in other):
        return False
    try:
        first = datetime.fromisoformat(one.replace("Z", "+00:00"))
        second = datetime.fromisoformat(other.replace("Z", "+00:00"))
    except ValueError:
        return False
    if (first.tzinfo is None) != (second.tzinfo is None):
        return False
    return abs((first - second).total_seconds()) <= tolerance

"""Coverage-guided fuzzing (atheris/libFuzzer) of the translation core: frame parsing → validation → translation.

An input is a script, one operation per line (a frame never holds a newline):
  `c<frame>` / `l<frame>`  the charger / the legacy CSMS sends these bytes
  `a`                      both peers answer the bridge's CALL in flight with a minimal valid result
  `t<seconds>`             time passes and timeouts expire
  `r`                      the proxy restarts from the state it persisted
  `o alias`                (first line only) TranslationConfig(long_id_token="alias")
At the end both peers answer or time out everything. After every operation: no exception escapes the bridge,
nothing is logged as a translation bug, every frame it emits parses and validates against its version's
schema, every CALL it got is answered exactly once, the state round-trips and was persisted when it changed,
and the connector map is consistent.

    python tests/fuzz/fuzz_bridge.py -runs=100000            # seeds: the conversation vectors
    python tests/fuzz/fuzz_bridge.py -max_total_time=600 CORPUS_DIR
A crash file it writes is a regression: move it into tests/fuzz/regressions/ (pytest replays each file there).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
REGRESSIONS = Path(__file__).parent / "regressions"
MAX_OPERATIONS = 64
MAX_SECONDS = 1e6
# No frame the bridge emits is larger than this many times all it received (plus a little): no amplification.
MAX_GROWTH = 4
WORDS: list[str] = []  # the schemas' words, for the JSON-aware mutator


def instrumented_imports() -> None:
    """Import the translation core, under atheris' instrumentation when fuzzing."""
    global rpc, schemas, Bridge, Outcome, TranslationConfig, CHARGER_CALLS, LEGACY_CALLS, DeviceModel, StationState
    from translators import rpc, schemas
    from translators.bridge import Bridge, Outcome, TranslationConfig
    from translators.dispatch import CHARGER_CALLS, LEGACY_CALLS
    from translators.state import DeviceModel, StationState


if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.logged_bugs import Bugs  # noqa: E402  (found through ROOT when run as a script)

if __name__ != "__main__":
    instrumented_imports()




def minimal(schema: dict[str, Any], root: dict[str, Any], now: str) -> Any:
    """The smallest value of a (draft-06 OCA) schema: required fields only, first enum value, lowest number."""
    if "$ref" in schema:
        return minimal(root["definitions"][schema["$ref"].rsplit("/", 1)[-1]], root, now)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: minimal(properties[key], root, now) for key in schema.get("required", [])}
    if kind == "array":
        return [minimal(schema["items"], root, now) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return now if schema.get("format") == "date-time" else "x" * schema.get("minLength", 1)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return False


@functools.cache
def response_schema(folder: str, action: str) -> dict[str, Any]:
    return json.loads((schemas.ocpp_package_dir() / folder / "schemas" / f"{action}Response.json").read_text())  # type: ignore[no-any-return]


class Harness:
    """One bridge between a scripted charger and legacy, with the checks run after every operation."""

    def __init__(self, config: TranslationConfig) -> None:
        self.schemas = schemas.load()
        self.config = config
        self.bridge = Bridge(StationState("CS-FUZZ"), self.schemas, CHARGER_CALLS, LEGACY_CALLS, config, "p")
        self.persisted = self.bridge.state.dumps()
        self.persisted_model = self.bridge.device_model.dumps()
        self.now = 0.0
        self.next_legacy_id = 0
        self.received_bytes = 0
        self.reset_peers()

    def reset_peers(self) -> None:
        # Per leg: CALLs received and not yet answered (id → actions), the bridge's CALL in flight, its ids.
        self.waiting: dict[str, dict[str, list[str]]] = {"charger": {}, "legacy": {}}
        self.in_flight: dict[str, Any] = {"charger": None, "legacy": None}
        self.ids: dict[str, set[str]] = {"charger": set(), "legacy": set()}

    def receive(self, leg: Any, raw: bytes) -> None:
        try:
            message = rpc.parse(raw)
        except rpc.FrameError as error:
            if error.is_call:
                self.waiting[leg].setdefault(error.message_id, []).append("")
        else:
            if isinstance(message, rpc.Call):
                self.waiting[leg].setdefault(message.message_id, []).append(message.action)
        self.now += 0.001
        self.received_bytes += len(raw)
        self.absorb(self.bridge.receive(leg, raw, self.now))

    def expire(self, seconds: float) -> None:
        self.now += seconds
        self.absorb(self.bridge.expire(self.now))

    def answer(self) -> None:
        for leg in ("legacy", "charger"):
            call = self.in_flight[leg]
            if call is not None:
                self.in_flight[leg] = None
                self.receive(leg, rpc.dump_result(call.message_id, self.result_for(leg, call)))

    def result_for(self, leg: str, call: Any) -> dict[str, Any]:
        schema = response_schema("v16" if leg == "legacy" else "v201", call.action)
        now = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)).strftime("%Y-%m-%dT%H:%M:%SZ")
        payload: dict[str, Any] = minimal(schema, schema, now)
        if call.action == "StartTransaction":
            self.next_legacy_id += 1
            payload["transactionId"] = self.next_legacy_id
        return payload

    def restart(self) -> None:
        state, model = StationState.loads(self.persisted), DeviceModel.loads(self.persisted_model)
        self.bridge = Bridge(state, self.schemas, CHARGER_CALLS, LEGACY_CALLS, self.config, "p", model)
        self.reset_peers()

    def drain(self) -> None:
        for _ in range(100):
            if any(self.in_flight.values()):
                self.answer()
            elif self.bridge.next_deadline() is not None:
                self.expire(self.config.call_timeout)
            else:
                break
            self.check()
        for leg, waiting in self.waiting.items():
            assert not waiting, f"{leg} never got an answer to {waiting}"

    # -- checks ----------------------------------------------------------------------------------
    def absorb(self, outcome: Outcome) -> None:
        if outcome.state_changed:
            self.persisted = self.bridge.state.dumps()
        if outcome.device_model_changed:
            self.persisted_model = self.bridge.device_model.dumps()
        for event in outcome.events:
            if event.kind == "timeout":
                assert self.in_flight[event.leg] is not None, f"timeout on {event.leg} with nothing in flight"
                self.in_flight[event.leg] = None
        for leg, frames in (("charger", outcome.to_charger), ("legacy", outcome.to_legacy)):
            for raw in frames:
                self.check_frame(leg, raw)

    def check_frame(self, leg: str, raw: bytes) -> None:
        version: Any = "1.6" if leg == "legacy" else "2.0.1"
        assert len(raw) <= MAX_GROWTH * (self.received_bytes + 1024), f"{leg}: a {len(raw)}-byte frame"
        message = rpc.parse(raw)
        if isinstance(message, rpc.Call):
            assert message.message_id not in self.ids[leg], f"{leg}: message id {message.message_id} reused"
            assert self.in_flight[leg] is None, f"{leg}: second CALL {message.action} while one is in flight"
            self.ids[leg].add(message.message_id)
            self.in_flight[leg] = message
            self.schemas.validate(version, "request", message.action, message.payload)
            return
        actions = self.waiting[leg].get(message.message_id)
        assert actions, f"{leg}: answer to {message.message_id}, which has no CALL waiting: {raw!r}"
        action = actions.pop(-1 if isinstance(message, rpc.CallError) else 0)
        if not actions:
            del self.waiting[leg][message.message_id]
        if isinstance(message, rpc.CallError):
            codes = rpc.ERROR_CODES_16 if version == "1.6" else rpc.ERROR_CODES_201
            assert message.code in codes, f"{leg}: {message.code} is not an OCPP {version} error code"
            assert len(message.description) <= rpc.MAX_ERROR_DESCRIPTION
        else:
            assert action, f"{leg}: a CALLRESULT to an unreadable CALL"
            self.schemas.validate(version, "response", action, message.payload)

    def on_response(self, leg: str, raw: bytes) -> None:
        """A response the script sends for the bridge's CALL: it is no longer in flight."""
        call = self.in_flight[leg]
        if call is None:
            return
        try:
            message = rpc.parse(raw)
        except rpc.FrameError:
            return
        if not isinstance(message, rpc.Call) and message.message_id == call.message_id:
            self.in_flight[leg] = None

    def check(self) -> None:
        state = self.bridge.state
        assert StationState.loads(state.dumps()) == state, "the state does not round-trip"
        assert StationState.loads(self.persisted) == state, "the state changed without Outcome.state_changed"
        assert DeviceModel.loads(self.persisted_model) == self.bridge.device_model, "device model not persisted"
        flat = list(state.connectors.values())
        assert len(flat) == len(set(flat)), f"two EVSE connectors share a 1.6 connectorId: {state.connectors}"
        for tx in state.transactions.values():
            evse = state.evse_for(tx.connector_id)
            assert evse is not None and evse[0] == tx.evse_id, f"{tx.transaction_id} on {tx.connector_id}: {evse}"
        if not any(self.in_flight.values()):
            assert self.bridge.next_deadline() is None and not self.bridge.busy()
            for leg, waiting in self.waiting.items():
                assert not waiting, f"{leg} got no answer to {waiting} and nothing is in flight"


def run_one(data: bytes) -> None:
    """Run one script; raise (AssertionError or the escaped exception) on any violation."""
    lines = data.split(b"\n")[:MAX_OPERATIONS]
    config = TranslationConfig()
    if lines and lines[0].strip() == b"o alias":
        config.long_id_token = "alias"
    bugs = Bugs()
    logger = logging.getLogger("cutover.translators")
    logger.addHandler(bugs)
    try:
        harness = Harness(config)
        for line in lines:
            op, argument = line[:1], line[1:]
            if op in (b"c", b"l"):
                leg = "charger" if op == b"c" else "legacy"
                harness.on_response(leg, argument)
                harness.receive(leg, argument)
            elif op == b"a":
                harness.answer()
            elif op == b"t":
                try:
                    seconds = min(abs(float(argument)), MAX_SECONDS)
                except ValueError:
                    seconds = 1.0
                harness.expire(seconds if seconds == seconds else 1.0)  # NaN: a second
            elif op == b"r":
                harness.restart()
            else:
                continue
            assert not bugs.records, bugs.records
            harness.check()
        harness.drain()
        assert not bugs.records, bugs.records
    finally:
        logger.removeHandler(bugs)


def vector_script(vector: dict[str, Any]) -> bytes:
    """A conversation vector (tests/vectors) as a fuzz input."""
    lines = [b"o alias"] if vector.get("config", {}).get("long_id_token") == "alias" else []
    for step in vector["steps"]:
        if "expire" in step:
            lines.append(b"t" + str(step["expire"]).encode())
        else:
            frame = step["frame"]
            raw = frame.encode() if isinstance(frame, str) else json.dumps(frame, separators=(",", ":")).encode()
            lines.append((b"c" if step["from"] == "charger" else b"l") + raw.replace(b"\n", b" "))
    return b"\n".join(lines)


def seeds() -> list[tuple[str, bytes]]:
    """Every conversation vector as a named fuzz input."""
    found = []
    for path in sorted(VECTORS.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines()):
            if line.strip() and not line.startswith("//"):
                found.append((f"{path.stem}-{number}", vector_script(json.loads(line))))
    return found


def strings(value: Any) -> set[str]:
    """The property names and string values (enum members) of a schema, as fuzzing tokens."""
    if isinstance(value, dict):
        return set(value) | {word for item in value.values() for word in strings(item)}
    if isinstance(value, list):
        return {word for item in value for word in strings(item)}
    return {value} if isinstance(value, str) and 2 <= len(value) <= 40 and "#" not in value else set()


def strings_of_schemas() -> set[str]:
    """Every action, property name and enum value of both versions' schemas."""
    words: set[str] = set()
    for folder in ("v16", "v201"):
        for path in (schemas.ocpp_package_dir() / folder / "schemas").glob("*.json"):
            words.add(path.stem.removesuffix("Request").removesuffix("Response"))
            words.update(strings(json.loads(path.read_text())))
    return words


def dictionary() -> str:
    """A libFuzzer dictionary of the schemas' words and the script's own."""
    words = strings_of_schemas() | {"c[2,", "l[3,", "l[4,", '"p1"', '"p2"', '"p3"'}
    escaped = (word.replace("\\", "\\\\").replace('"', '\\"') for word in sorted(words) if word.isprintable())
    return "".join(f'"{word}"\n' for word in escaped)


# Values on the edges of what the schemas allow, or just beyond them.
EDGE_INTEGERS = (0, -1, 1, 2, 20, 21, 36, 255, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**6)
EDGE_FLOATS = (0.0, -0.0, 0.1, -1.5, 1e-300, 1e15, 1e300, -1e300, 2.0**53 + 1)
EDGE_STRINGS = (
    "", "x" * 20, "x" * 21, "x" * 36, "x" * 37, "é" * 21, "x" * 1000, "\u0000", "-1", "p1",
    "2026-02-30T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "0001-01-01T00:00:00+14:00", "2026-01-01",
)  # fmt: skip


def mutated_json(value: Any, rng: random.Random, words: list[str]) -> Any:
    """`value` with one node somewhere in it replaced, removed, duplicated or retyped."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.1:
            return {k: v for k, v in value.items() if k != key}
        if roll < 0.2:
            return dict(value, **{rng.choice(words): mutated_json(value[key], rng, words)})
        return dict(value, **{key: mutated_json(value[key], rng, words)})
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        roll = rng.random()
        if roll < 0.1:
            return value[:index] + value[index + 1 :]
        if roll < 0.2:
            return value + [value[index]] * rng.choice((1, 2, 40))
        return [*value[:index], mutated_json(value[index], rng, words), *value[index + 1 :]]
    roll = rng.random()
    if isinstance(value, bool) or roll < 0.1:
        return rng.choice((True, False, None, [], {}, 0, "", value))
    if isinstance(value, int):
        return rng.choice((value + 1, value - 1, value * 1000, rng.choice(EDGE_INTEGERS)))
    if isinstance(value, float):
        return rng.choice((value * 10, -value, rng.choice(EDGE_FLOATS)))
    if isinstance(value, str) and words:
        return rng.choice((rng.choice(words), rng.choice(EDGE_STRINGS), value * 2, value[:-1]))
    return value


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's byte mutations half the time; else one JSON-aware change to one frame, or to the script."""
    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.5:
        return bytes(atheris.Mutate(data, max_size))
    lines = data.split(b"\n")
    index = rng.randrange(len(lines))
    roll = rng.random()
    if roll < 0.15:
        lines.insert(index, rng.choice((b"a", b"a", b"r", b"t1", b"t31", lines[index])))
    elif roll < 0.2 and len(lines) > 1:
        lines.insert(rng.randrange(len(lines)), lines.pop(index))
    elif lines[index][:1] in (b"c", b"l"):
        try:
            frame = orjson.dumps(mutated_json(orjson.loads(lines[index][1:]), rng, WORDS))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON; or an integer beyond 64 bits
            return bytes(atheris.Mutate(data, max_size))
        lines[index] = lines[index][:1] + frame
    return b"\n".join(lines)[:max_size]


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["translators"]):
        instrumented_imports()
    logger = logging.getLogger("cutover.translators")
    logger.propagate = False  # warnings (peer failures) are expected by the thousand
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):  # no corpus directory given: seed one
        corpus = Path(tempfile.mkdtemp(prefix="fuzz_bridge_"))
        for name, data in seeds():
            (corpus / name).write_bytes(data)
        for path in sorted(REGRESSIONS.iterdir()) if REGRESSIONS.is_dir() else []:
            (corpus / f"regression-{path.name}").write_bytes(path.read_bytes())
        argv.append(str(corpus))
    if not any(arg.startswith("-dict=") for arg in argv):
        words = Path(tempfile.mkdtemp(prefix="fuzz_bridge_dict_")) / "ocpp.dict"
        words.write_text(dictionary())
        argv.insert(1, f"-dict={words}")
    WORDS.extend(sorted(strings_of_schemas()))
    atheris.Setup(argv, run_one, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Configuration: every flag is also a `CUTOVER_*` environment variable (12-factor); the flag wins.

A bad value stops start-up with a message naming the setting, the value and what it must be.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting with a value that cannot be used; the message names the flag and its variable."""


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:9000")
    return host.strip("[]"), int(port)


def ws_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("must be a ws:// or wss:// URL, e.g. ws://csms:9000/ocpp/{station}")
    return text


def redis_url(text: str) -> str:
    if urlsplit(text).scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        raise ValueError(
            "must be a redis://, rediss:// or unix:// URL, or redis+cluster://HOST:PORT for a Redis Cluster"
        )
    return text


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number greater than 0") from None
    if value <= 0:
        raise ValueError("must be a number greater than 0")
    return value


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ValueError("must be a whole number greater than 0")
    return int(text)


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ValueError("must name a readable file")
    return path


def readable_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError("must name a folder")
    return path


def security_profile(text: str) -> int:
    if text not in ("0", "1", "2", "3"):
        raise ValueError("must be 0 (none), 1 (ws + Basic), 2 (wss + Basic) or 3 (wss + client certificate)")
    return int(text)


def choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return text

    return parse


def env_name(flag: str) -> str:
    return "CUTOVER_" + flag.lstrip("-").replace("-", "_").upper()


def add(
    parser: argparse.ArgumentParser, flag: str, parse: Callable[[str], Any], default: Any, help: str
) -> None:
    """A flag whose default comes from its CUTOVER_* variable; values are parsed later by `resolve`."""
    parser.add_argument(
        flag,
        default=None,
        metavar=env_name(flag)[len("CUTOVER_") :],
        help=f"{help} (env {env_name(flag)}; default {default!r})",
    )
    parser.set_defaults(**{f"_spec_{flag.lstrip('-').replace('-', '_')}": (flag, parse, default)})


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed values for every flag declared with `add`, from the command line, else the environment."""
    values: dict[str, Any] = {}
    for name, spec in vars(args).items():
        if not name.startswith("_spec_"):
            continue
        flag, parse, default = spec
        key = name[len("_spec_") :]
        raw = getattr(args, key)
        source = flag
        if raw is None and env_name(flag) in os.environ:
            raw, source = os.environ[env_name(flag)], env_name(flag)
        if raw is None:
            values[key] = default
            continue
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {raw!r} {exc}") from None
    return values

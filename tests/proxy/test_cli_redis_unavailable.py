"""The one-shot commands (`switch`, `status`, `audit`, `group`, `enroll`, `rules`, `divergences`) on a Redis
they cannot reach: a one-line message and exit status 1, not a traceback; a plain Redis and a Redis Cluster
(whose client raises RedisClusterException, not a RedisError) alike."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = [["status"], ["switch", "--to", "cutover", "--station", "CP001"], ["audit"], ["divergences"]]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_an_unreachable_redis_is_a_message_and_status_1(command: list[str], url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", *command, "--redis-url", url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"cutover {command[0]}: Redis unavailable (--redis-url): "), result.stderr
    assert "Traceback" not in result.stderr

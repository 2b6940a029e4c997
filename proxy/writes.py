"""The writes of one event-loop pass, made together at its end: state to Redis first, then frames.

Every message the proxy handles in one pass of the event loop (all the sockets that were ready) may write
a station state to Redis and frames to peers. A system call per write costs more than the translation on
this path; here each socket is written once per pass. The order that matters holds across the pass: every
state handed over before a frame was queued reaches Redis's socket before that frame reaches its peer's
(`first()` flushes run before any frame is written, by `flush_first()` at the start of every frame write).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("cutover.proxy")


class Writer(Protocol):
    def write_frames(self) -> None: ...


class PassWrites:
    def __init__(self) -> None:
        self._first: dict[Callable[[], None], None] = {}
        self._writers: dict[Writer, None] = {}
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def first(self, flush: Callable[[], None]) -> None:
        """`flush` runs before any frame is written, at the latest at the end of this pass."""
        self._first[flush] = None
        self._schedule()

    def frames(self, writer: Writer) -> None:
        """`writer.write_frames()` runs at the end of this pass (after every `first()` flush)."""
        self._writers[writer] = None
        self._schedule()

    def flush_first(self) -> None:
        while self._first:
            flushes, self._first = self._first, {}
            for flush in flushes:
                _run(flush)

    def _schedule(self) -> None:
        # Once this pass's flush is scheduled, nothing to do: checked before asyncio.get_running_loop(), which
        # makes a getpid() system call each time (CPython 3.11, ~0.26 µs here), and this runs for every frame.
        if self._handle is not None and self._loop is not None and self._loop.is_running():
            return
        # No flush scheduled, or one left on a loop that ended mid-pass (tests).
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        self.flush_first()
        writers, self._writers = self._writers, {}
        for writer in writers:
            _run(writer.write_frames)


def _run(write: Callable[[], None]) -> None:
    """One write of the pass; a failure (a bug) is logged and never keeps the others of the pass from going."""
    try:
        write()
    except Exception:
        log.exception("pass_write_failed write=%r", write)


WRITES = PassWrites()  # one per process: the order holds across all its stations

"""What the translation core logs at ERROR is a bug of ours: an exception it caught, or an invalid frame it
produced instead of sending. Fuzzers attach `Bugs` to its logger and fail on anything it collected."""

from __future__ import annotations

import logging


class Bugs(logging.Handler):
    """Collects what the bridge logs at ERROR: a translation bug or an invalid translation."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        traceback = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        self.records.append(f"{record.getMessage()}\n{traceback}")

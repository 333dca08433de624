"""A one-line progress bar for long runs on a terminal."""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    THRESHOLD = 500  # queues shorter than this are done before a bar would help

    def __init__(self, total: int, out: Any, width: int = 30) -> None:
        self.total = max(total, 1)
        self.out = out  # a Django OutputWrapper
        self.width = width
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, counts: Any) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        done = sum(counts)
        filled = min(self.width, int(self.width * done / self.total))
        rate = done / max(now - self.started, 1e-6)
        self.out.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {rate:,.0f}/s",
            ending="",
        )
        self.out.flush()

    def finish(self) -> None:
        self.out.write("\r" + " " * (self.width + 40) + "\r", ending="")
        self.out.flush()

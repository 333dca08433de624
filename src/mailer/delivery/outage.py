"""Saying once that the database went away, and once that it came back.

Each part of a worker that talks to the database -- a delivery slot claiming
mail, its recorder, the poller, the lease keeper -- meets an outage on its
own and retries on its own, with backoff. They report here, so the log says
"unreachable" when the first of them fails and "back" when the last of them
succeeds again: two lines per outage, not one per retry.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("mailer.worker")


class Outage:
    """Which parts of a process cannot reach the database right now, and since when."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}  # part -> the error it met
        self._since: float | None = None
        self._back_at = float("-inf")

    def failed(self, part: str, error: BaseException | str, began: float | None = None) -> None:
        """``part`` could not do its work in the database (it will retry).

        ``began``: when the work that failed began (time.monotonic()); work begun
        before the database came back belongs to the outage that has ended.
        """
        text = _describe(error)
        with self._lock:
            if began is not None and began < self._back_at:
                return
            first = not self._failing
            self._failing[part] = text
            if first:
                self._since = time.monotonic()
        if first:
            self._log.error("the database is unreachable (%s: %s); retrying", part, text)

    def ok(self, part: str) -> None:
        """``part`` did its work in the database."""
        if part not in self._failing:  # the usual case: no lock needed to say nothing
            return
        with self._lock:
            if self._failing.pop(part, None) is None or self._failing:
                return
            since, self._since = self._since, None
            self._back_at = time.monotonic()
        seconds = time.monotonic() - since if since is not None else 0.0
        self._log.warning("the database is back after %.1f s", seconds)

    @property
    def down(self) -> bool:
        return bool(self._failing)


class Backoff:
    """Delays between retries: doubling from ``first`` up to ``most`` seconds."""

    def __init__(self, first: float = 0.05, most: float = 5.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.most)
        return delay

    def reset(self) -> None:
        self._next = self.first


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


__all__ = ["Backoff", "Outage"]

"""What the delivery connections of one run did together, and the run's limits on it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple


class SendCounts(NamedTuple):
    """What a run did: messages sent, deferred (to be retried) and failed."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __add__(self, other: object) -> SendCounts:
        if not isinstance(other, SendCounts):
            return NotImplemented
        return SendCounts(
            self.sent + other.sent, self.deferred + other.deferred, self.failed + other.failed
        )


class Tally:
    """The counts of a run's connections together: MAILER_EMAIL_MAX_BATCH and
    MAILER_EMAIL_MAX_DEFERRED are limits on the run, not on each connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = SendCounts()
        self._going = 0  # messages being sent, their results not counted yet
        self._said: set[str] = set()

    def limit(
        self, max_batch: int | None, max_deferred: int | None, *, start: bool = False
    ) -> str | None:
        """The limit reached, if newly ("max_batch", "max_deferred"), "" if said before,
        None if none is: each message being sent counts as if it would add to both.
        With ``start`` and no limit reached, one more message is being sent."""
        with self._lock:
            counts, going = self.counts, self._going
            reached = None
            if max_batch is not None and counts.sent + going >= max_batch:
                reached = "max_batch"
            elif (
                max_deferred is not None and counts.deferred + counts.failed + going >= max_deferred
            ):
                reached = "max_deferred"
            if reached is None:
                self._going += start
                return None
            if reached in self._said:
                return ""
            self._said.add(reached)
            return reached

    def cancel(self) -> None:
        """The message started last is not sent after all."""
        with self._lock:
            self._going = max(0, self._going - 1)

    def add(self, counts: SendCounts, on_result: Callable[[SendCounts], None] | None) -> None:
        """Count one result (of a message being sent); tell ``on_result`` the run's
        counts (one caller at a time)."""
        with self._lock:
            self.counts += counts
            self._going = max(0, self._going - 1)
            if on_result is not None:
                on_result(self.counts)


__all__ = ["SendCounts", "Tally"]

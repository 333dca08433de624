"""The global rate limit: messages per second for all workers together.

Tokens come from one bucket row in the database (``RateLimit``), taken a
tenth of a second's worth at a time, so the limit holds however many workers
on however many hosts deliver -- ``send_mail`` runs included.
"""

from __future__ import annotations

import threading

from mailer.conf import settings
from mailer.queue.ratelimit import RateLimit

BUCKET = "global"


class RateLimiter:
    """Blocks ``acquire()`` until the shared bucket grants a token (or ``stop`` is set)."""

    @classmethod
    def from_settings(cls, stop: threading.Event, using: str = "default") -> RateLimiter | None:
        """A limiter for ``MAILER_RATE_LIMIT``, or None when there is no limit."""
        rate = settings.RATE_LIMIT
        return cls(rate, stop, using) if rate else None

    def __init__(self, rate: float, stop: threading.Event, using: str = "default") -> None:
        self.rate = rate
        self.stop = stop
        self.using = using
        self._tokens = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        chunk = max(1, int(self.rate / 10))  # a tenth of a second's worth at a time
        while not self.stop.is_set():
            with self._lock:
                if self._tokens > 0:
                    self._tokens -= 1
                    return
                granted, wait = RateLimit.objects.using(self.using).take(BUCKET, self.rate, chunk)
                if granted:
                    self._tokens = granted - 1
                    return
            self.stop.wait(min(max(wait, 0.001), 1.0))

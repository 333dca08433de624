"""Rate limits and quotas shared by all workers: the global rate, and per delivery alias
messages per second and per rolling 24 hours (``MAILER_RATE_LIMIT``, ``MAILER_QUOTAS``).

Each limit is rows of ``RateLimit`` in the database, so it holds however many workers
on however many hosts deliver -- ``send_mail`` runs included. A rate is a token bucket
taken a tenth of a second's worth at a time; a daily quota counts what was taken per
five-minute slot (``RateLimit.objects.take_window``), a few at a time when the quota is
large (at most a thousandth of it is held by a process, given back when it is done).
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import NamedTuple

from django.db import DatabaseError

from mailer.conf import Quota, mailers_configured, settings
from mailer.queue.aliases import DEFAULT_ALIAS, delivery_alias_of
from mailer.queue.ratelimit import RateLimit

logger = logging.getLogger("mailer.engine")

BUCKET = "global"
DAY = 24 * 3600.0


def quota_alias(mailer: str) -> str:
    """The ``MAILER_QUOTAS`` key of mail whose ``mailer`` field is ``mailer``: the alias itself,
    and for an empty one (``MAILER_EMAIL_BACKEND``) "default", or with ``MAILERS`` the alias
    that delivers for "default"."""
    if mailer:
        return mailer
    return delivery_alias_of(DEFAULT_ALIAS) if mailers_configured() else DEFAULT_ALIAS


def rate_bucket(alias: str) -> str:
    return f"rate:{alias}"


def day_bucket(alias: str) -> str:
    return f"day:{alias}"


class _Tokens:
    """Tokens of one shared limit taken from the database a chunk at a time, kept here."""

    def __init__(self, chunk: int) -> None:
        self.chunk = max(1, chunk)
        self.left = 0
        self.lock = threading.Lock()

    def take_one(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        return False


class RateLimiter:
    """``acquire(mailer)`` waits for every per-second limit that applies, and says when the
    alias's daily quota allows the next message if it is used up (None: send now)."""

    @classmethod
    def from_settings(cls, stop: threading.Event, using: str = "default") -> RateLimiter | None:
        """A limiter for ``MAILER_RATE_LIMIT`` and ``MAILER_QUOTAS`` (None: neither is set)."""
        rate, quotas = settings.RATE_LIMIT, settings.QUOTAS
        return cls(rate, stop, using, quotas) if rate or quotas else None

    def __init__(
        self,
        rate: float | None,
        stop: threading.Event,
        using: str = "default",
        quotas: dict[str, Quota] | None = None,
    ) -> None:
        self.rate = rate
        self.stop = stop
        self.using = using
        self.quotas = quotas or {}
        self._tokens: dict[str, _Tokens] = {}
        self._lock = threading.Lock()

    def acquire(self, mailer: str = "") -> datetime.datetime | None:
        alias = quota_alias(mailer) if self.quotas else ""
        quota = self.quotas.get(alias) if self.quotas else None
        if quota is not None and quota.per_day:
            until = self._take_day(alias, quota)
            if until is not None:
                return until
        if quota is not None and quota.per_second:
            self._wait_for(rate_bucket(alias), quota.per_second)
        if self.rate:
            self._wait_for(BUCKET, self.rate)
        return None

    def _held(self, name: str, chunk: int) -> _Tokens:
        with self._lock:
            if name not in self._tokens:
                self._tokens[name] = _Tokens(chunk)
            return self._tokens[name]

    def _wait_for(self, name: str, rate: float) -> None:
        """Block until bucket ``name`` (``rate`` per second) grants a token, or ``stop``."""
        held = self._held(name, int(rate / 10))  # a tenth of a second's worth at a time
        while not self.stop.is_set():
            with held.lock:
                if held.take_one():
                    return
                granted, wait = RateLimit.objects.using(self.using).take(name, rate, held.chunk)
                if granted:
                    held.left = granted - 1
                    return
            self.stop.wait(min(max(wait, 0.001), 1.0))

    def _take_day(self, alias: str, quota: Quota) -> datetime.datetime | None:
        assert quota.per_day is not None
        chunk = quota.per_day // 1000  # what a process may hold, unused, at most
        if quota.per_second or self.rate:  # no more than a tenth of a second's sending
            chunk = min(chunk, int(min(filter(None, (quota.per_second, self.rate))) / 10))
        held = self._held(day_bucket(alias), chunk)
        with held.lock:
            if held.take_one():
                return None
            granted, until = RateLimit.objects.using(self.using).take_window(
                day_bucket(alias), quota.per_day, held.chunk, window=DAY
            )
            if granted:
                held.left = granted - 1
                return None
            return until

    def close(self) -> None:
        """Give back what this process took of daily quotas and did not use."""
        with self._lock:
            days = [(n, t) for n, t in self._tokens.items() if n.startswith("day:")]
        for name, held in days:
            with held.lock:
                left, held.left = held.left, 0
            if not left:
                continue
            try:
                RateLimit.objects.using(self.using).give_back(name, left, window=DAY)
            except DatabaseError as error:  # they stay counted: the quota is not overrun
                logger.warning("could not give back %d of quota %s: %s", left, name, error)


class QuotaUse(NamedTuple):
    alias: str
    quota: Quota
    used_today: int  # messages sent through the alias in the last 24 hours (by 5-minute slot)


def quota_use(using: str = "default") -> list[QuotaUse]:
    """For ``mailer_status``: each alias of ``MAILER_QUOTAS``, and its daily quota used."""
    rows = RateLimit.objects.using(using)
    return [
        QuotaUse(alias, quota, rows.used_in_window(day_bucket(alias), window=DAY))
        for alias, quota in sorted(settings.QUOTAS.items())
    ]

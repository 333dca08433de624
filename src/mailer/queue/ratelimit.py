"""Limits every worker shares: token buckets (messages per second) and rolling windows
(messages per 24 hours), each in rows of ``RateLimit``."""

from __future__ import annotations

import datetime

from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RateLimitQuerySet(models.QuerySet["RateLimit"]):
    def take(self, name: str, rate: float, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens from the shared bucket ``name`` refilled at ``rate``/s.

        Returns how many were granted and, if none, seconds until one is
        available. One short transaction; the bucket holds at most one
        second's worth of tokens.
        """
        burst = max(rate, 1.0)
        for _attempt in range(3):
            now = timezone.now()
            with transaction.atomic(using=self.db):
                # Write first: SQLite takes its write lock here; the others lock the row.
                if self.filter(name=name).update(name=name):
                    bucket = self.get(name=name)
                    elapsed = max((now - bucket.updated_at).total_seconds(), 0.0)
                    tokens = min(burst, bucket.tokens + elapsed * rate)
                else:
                    bucket, tokens = self.model(name=name), burst
                granted = min(want, int(tokens))
                bucket.tokens = tokens - granted
                bucket.updated_at = now
                try:
                    with transaction.atomic(using=self.db):
                        bucket.save(using=self.db)
                except IntegrityError:
                    continue  # another worker created the bucket first: read it
            wait = 0.0 if granted else (1.0 - bucket.tokens) / rate
            return granted, wait
        return 0, 1.0 / rate

    def take_window(
        self, name: str, limit: int, want: int, *, window: float = 86400.0
    ) -> tuple[int, datetime.datetime | None]:
        """Take up to ``want`` of the ``limit`` messages bucket ``name`` allows per rolling
        ``window`` seconds; return how many were granted and, if none, when one will be.

        What was taken is counted in rows of ``WINDOW_SLOT`` seconds (``name@slot``,
        ``tokens`` the count), a slot counted while any part of it is in the window:
        never more than ``limit`` in any window, at worst a slot's length late. One short
        transaction, serialised on the row ``name`` for every worker.
        """
        now = timezone.now()
        first, last = _slots(now, window)
        names = {f"{name}@{slot}": slot for slot in range(first, last + 1)}
        with transaction.atomic(using=self.db):
            if not self.filter(name=name).update(updated_at=now):  # the lock: row or table
                try:
                    with transaction.atomic(using=self.db):
                        self.create(name=name, updated_at=now)
                except IntegrityError:
                    self.filter(name=name).update(updated_at=now)
            counts = dict(self.filter(name__in=list(names)).values_list("name", "tokens"))
            granted = max(0, min(want, limit - int(sum(counts.values()))))
            if granted:
                current = f"{name}@{last}"
                if not self.filter(name=current).update(
                    tokens=models.F("tokens") + granted, updated_at=now
                ):
                    self.create(name=current, tokens=granted, updated_at=now)
                stale = now - datetime.timedelta(seconds=window + WINDOW_SLOT)
                self.filter(name__startswith=f"{name}@", updated_at__lt=stale).delete()
                return granted, None
        oldest = min((names[n] for n, count in counts.items() if count), default=last)
        reopens = (oldest + 1) * WINDOW_SLOT + window
        return 0, datetime.datetime.fromtimestamp(reopens, tz=datetime.UTC)

    def give_back(self, name: str, count: int, *, window: float = 86400.0) -> None:
        """Return ``count`` that ``take_window`` granted for ``name`` and were not used
        (a process that took a few at a time is done), from the latest slots."""
        now = timezone.now()
        first, last = _slots(now, window)
        names = [f"{name}@{slot}" for slot in range(first, last + 1)]
        with transaction.atomic(using=self.db):
            self.filter(name=name).update(updated_at=now)  # the lock take_window takes
            for row in self.filter(name__in=names, tokens__gt=0).order_by("-updated_at"):
                returned = min(count, int(row.tokens))
                self.filter(name=row.name).update(tokens=models.F("tokens") - returned)
                count -= returned
                if count <= 0:
                    return

    def used_in_window(self, name: str, *, window: float = 86400.0) -> int:
        """How many ``take_window`` granted for ``name`` in the rolling window (by slot)."""
        first, last = _slots(timezone.now(), window)
        names = [f"{name}@{slot}" for slot in range(first, last + 1)]
        total = self.filter(name__in=names).aggregate(total=models.Sum("tokens"))["total"]
        return int(total or 0)


WINDOW_SLOT = 300  # seconds counted together in a rolling window's use


def _slots(now: datetime.datetime, window: float) -> tuple[int, int]:
    """The first and the last slot that count for a window ending ``now``."""
    moment = now.timestamp()
    return int((moment - window) // WINDOW_SLOT), int(moment // WINDOW_SLOT)


class RateLimit(models.Model):
    """Shared by every worker: a token bucket (messages per second), or for a rolling
    window (messages per 24 hours) its lock row and what each slot of it used."""

    name = models.CharField(max_length=200, primary_key=True)
    tokens = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RateLimitQuerySet.as_manager()

    class Meta:
        verbose_name = _("rate limit")

    def __str__(self) -> str:
        return self.name

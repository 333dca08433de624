"""The token bucket every worker shares: the global messages-per-second limit."""

from __future__ import annotations

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


class RateLimit(models.Model):
    """A token bucket shared by every worker: the global messages-per-second limit."""

    name = models.CharField(max_length=50, primary_key=True)
    tokens = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RateLimitQuerySet.as_manager()

    class Meta:
        verbose_name = _("rate limit")

    def __str__(self) -> str:
        return self.name

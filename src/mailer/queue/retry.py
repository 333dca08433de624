"""When a message that could not be delivered is tried again, and when we give up.

Exponential backoff with jitter: attempt *n* (counting from 1) that failed
transiently is retried after ``MAILER_RETRY_BACKOFF * 2**(n-1)`` seconds,
capped at ``MAILER_RETRY_BACKOFF_MAX``, each delay drawn uniformly from its
upper half so that mail deferred together does not come back together.
A message is failed once it has used ``MAILER_EMAIL_MAX_RETRIES`` retries or
is older than ``MAILER_MAX_MESSAGE_AGE`` seconds, whichever comes first.
"""

from __future__ import annotations

import datetime
import random

from django.utils.translation import ngettext

from mailer.conf import settings


def backoff_delay(failed_attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failed_attempts`` failed attempts (>= 1)."""
    base = settings.RETRY_BACKOFF
    cap = settings.RETRY_BACKOFF_MAX
    exponent = min(max(failed_attempts, 1) - 1, 32)
    ceiling = min(cap, base * (2**exponent))
    return (rng or random).uniform(ceiling / 2, ceiling)


def next_attempt_at(failed_attempts: int, now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=backoff_delay(failed_attempts))


def exhausted(failed_attempts: int, when_added: datetime.datetime, now: datetime.datetime) -> str:
    """Why a message with ``failed_attempts`` failures must not be retried, or ''."""
    max_retries = settings.EMAIL_MAX_RETRIES
    if max_retries is not None and failed_attempts > max_retries:
        attempts = ngettext("%(count)d attempt", "%(count)d attempts", failed_attempts) % {
            "count": failed_attempts
        }
        return f"gave up after {attempts} (MAILER_EMAIL_MAX_RETRIES={max_retries})"
    max_age = settings.MAX_MESSAGE_AGE
    if max_age is not None and (now - when_added).total_seconds() > max_age:
        return f"gave up: queued longer than MAILER_MAX_MESSAGE_AGE ({max_age:g} s)"
    return ""

"""Exponential backoff with jitter, and when to give up."""

from __future__ import annotations

import datetime
import random
from typing import Any

from django.utils import timezone

from mailer.queue.retry import backoff_delay, exhausted


def test_each_delay_doubles_within_its_jitter_band(settings: Any) -> None:
    settings.MAILER_RETRY_BACKOFF = 60
    settings.MAILER_RETRY_BACKOFF_MAX = 10_000
    rng = random.Random(7)
    for attempt, ceiling in [(1, 60), (2, 120), (3, 240), (4, 480)]:
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2 and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not all the same


def test_delays_stop_growing_at_the_cap(settings: Any) -> None:
    settings.MAILER_RETRY_BACKOFF = 60
    settings.MAILER_RETRY_BACKOFF_MAX = 3600
    assert all(1800 <= backoff_delay(40) <= 3600 for _ in range(100))


def test_max_retries_counts_retries_after_the_first_attempt(settings: Any) -> None:
    settings.MAILER_EMAIL_MAX_RETRIES = 2
    settings.MAILER_MAX_MESSAGE_AGE = None
    now = timezone.now()
    assert exhausted(2, now, now) == ""  # first attempt + one retry failed
    assert exhausted(3, now, now) != ""  # first attempt + two retries failed


def test_the_reason_counts_attempts_in_good_english(settings: Any) -> None:
    settings.MAILER_MAX_MESSAGE_AGE = None
    now = timezone.now()
    settings.MAILER_EMAIL_MAX_RETRIES = 0
    assert exhausted(1, now, now).startswith("gave up after 1 attempt (")
    settings.MAILER_EMAIL_MAX_RETRIES = 2
    assert exhausted(3, now, now).startswith("gave up after 3 attempts (")


def test_age_gives_up_whatever_the_count(settings: Any) -> None:
    settings.MAILER_EMAIL_MAX_RETRIES = None
    settings.MAILER_MAX_MESSAGE_AGE = 3600
    now = timezone.now()
    assert exhausted(1, now - datetime.timedelta(minutes=30), now) == ""
    assert "MAILER_MAX_MESSAGE_AGE" in exhausted(1, now - datetime.timedelta(hours=2), now)


def test_without_limits_it_never_gives_up(settings: Any) -> None:
    settings.MAILER_EMAIL_MAX_RETRIES = None
    settings.MAILER_MAX_MESSAGE_AGE = None
    now = timezone.now()
    assert exhausted(1000, now - datetime.timedelta(days=365), now) == ""

"""Quotas per delivery alias: messages per second and per rolling 24 hours, shared by every
worker through the database; a used-up daily quota holds what is left until the window
allows it, without counting an attempt."""

from __future__ import annotations

import datetime
import json
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from mailer.delivery.recorder import EXPOSED_LIMIT
from mailer.engine import SendCounts, send_all
from mailer.models import RESULT_SUCCESS, Message, MessageLog, RateLimit, Status
from mailer.queue.ratelimit import WINDOW_SLOT
from mailer.runner.ratelimit import day_bucket, quota_alias

from . import processes
from .assertions import MailAssertions
from .samples import batch, token_of

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.timedelta(hours=24)


def queue_many(count: int) -> list[str]:
    messages = batch(count)
    Message.objects.enqueue(messages)
    return [token_of(m) for m in messages]


def delivery_alias() -> str:
    """The MAILER_QUOTAS key of the mail these tests queue ("default", or MAILERS' "smtp")."""
    return quota_alias("")


def a_day_passes() -> None:
    """Move every slot of the daily quota's use a day (and a slot) into the past, and make
    held mail due: what the clock would do in 24 hours."""
    shift = int(DAY.total_seconds()) // WINDOW_SLOT + 1
    for row in RateLimit.objects.filter(name__startswith=day_bucket(delivery_alias()) + "@"):
        name, slot = row.name.rsplit("@", 1)
        RateLimit.objects.filter(name=row.name).update(name=f"{name}@{int(slot) - shift}")
    Message.objects.update(due_at=timezone.now())


class TestDailyQuota(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, settings: Any) -> None:
        self.server = smtp
        settings.MAILER_QUOTAS = {delivery_alias(): {"per_day": 3}}

    def test_a_run_sends_the_quota_and_holds_the_rest_without_an_attempt(self) -> None:
        tokens = queue_many(5)

        assert send_all() == SendCounts(sent=3)

        self.assert_each_delivered_once(tokens[:3])
        held = list(Message.objects.all())
        assert len(held) == 2
        assert {(m.status, m.retry_count, m.last_reply) for m in held} == {(Status.QUEUED, 0, "")}
        assert all(m.due_at > timezone.now() + DAY - datetime.timedelta(minutes=6) for m in held)
        assert list(MessageLog.objects.values_list("result", flat=True)) == [RESULT_SUCCESS] * 3

    def test_mail_held_a_claim_at_a_time_keeps_the_worker_moving(self, settings: Any) -> None:
        settings.MAILER_CLAIM_BATCH_SIZE = 1  # a claim, and a hold, per message
        queue_many(2 * EXPOSED_LIMIT)
        done: list[SendCounts] = []

        def drain() -> None:
            try:
                done.append(send_all())
            finally:
                connections.close_all()  # this thread's own connections

        run = threading.Thread(target=drain, daemon=True)

        run.start()
        run.join(timeout=60)

        assert done == [SendCounts(sent=3)]
        assert Message.objects.count() == 2 * EXPOSED_LIMIT - 3

    def test_held_mail_is_not_due_again_until_the_window_allows(self) -> None:
        tokens = queue_many(5)
        send_all()

        assert send_all() == SendCounts()  # nothing is due yet

        a_day_passes()
        assert send_all() == SendCounts(sent=2)
        self.assert_each_delivered_once(tokens)
        self.assert_queue_empty()

    def test_a_large_quota_is_taken_a_thousandth_at_a_time(self, settings: Any) -> None:
        settings.MAILER_QUOTAS = {delivery_alias(): {"per_day": 10_000}}
        queue_many(12)

        assert send_all() == SendCounts(sent=12)

        # Two takes of ten (a transaction per ten messages); the eight unused given back.
        assert RateLimit.objects.used_in_window(day_bucket(delivery_alias())) == 12

    def test_another_alias_is_not_held_by_this_ones_quota(self, settings: Any) -> None:
        settings.MAILER_QUOTAS = {"elsewhere": {"per_day": 1}}
        tokens = queue_many(4)
        assert send_all() == SendCounts(sent=4)
        self.assert_each_delivered_once(tokens)

    def test_mailer_status_shows_the_quota_used(self, capsys: Any) -> None:
        queue_many(5)
        send_all()

        call_command("mailer_status")
        assert f"quota {delivery_alias()}: 3 of 3 in the last 24 h" in capsys.readouterr().out

        call_command("mailer_status", "--json")
        [quota] = json.loads(capsys.readouterr().out)["quotas"]
        assert quota == {
            "alias": delivery_alias(),
            "per_second": None,
            "per_day": 3,
            "used_last_24h": 3,
        }


class TestPerSecond(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_an_alias_sends_no_faster_than_its_rate(self, settings: Any) -> None:
        settings.MAILER_QUOTAS = {delivery_alias(): {"per_second": 10}}
        tokens = queue_many(20)

        started = time.monotonic()
        assert send_all() == SendCounts(sent=20)

        # 10/s with a one-second burst: 20 messages need at least another second.
        assert time.monotonic() - started >= 0.9
        self.assert_each_delivered_once(tokens)


class TestRollingWindow:
    def test_what_was_taken_a_day_ago_is_given_back_slot_by_slot(self) -> None:
        rows = RateLimit.objects
        assert rows.take_window("day:x", 5, 3) == (3, None)
        granted, until = rows.take_window("day:x", 5, 3)
        assert granted == 2 and until is None
        granted, until = rows.take_window("day:x", 5, 1)
        assert granted == 0 and until is not None
        assert DAY <= until - timezone.now() <= DAY + datetime.timedelta(seconds=WINDOW_SLOT)
        assert rows.used_in_window("day:x") == 5
        assert rows.used_in_window("day:y") == 0


class TestManyWorkers(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_workers_together_send_no_more_than_one_daily_quota(self) -> None:
        quota = 25
        tokens = queue_many(80)
        env = processes.settings_env(quotas={delivery_alias(): {"per_day": quota}})
        procs = [
            processes.start(
                ["runmailer", "--exit-when-idle", "--concurrency", "2"], self.server.port, **env
            )
            for _ in range(3)
        ] + [processes.start(["send_mail"], self.server.port, **env)]
        for proc in procs:
            code, _, err = processes.wait(proc, timeout=120)
            assert code == 0, err[-2000:]

        delivered = [t for t in tokens if self.server.by_token(t)]
        assert len(delivered) == quota
        self.assert_each_delivered_once(delivered)
        held = Message.objects.all()
        assert held.count() == len(tokens) - quota
        assert not held.exclude(status=Status.QUEUED, retry_count=0).exists()
        assert not held.filter(due_at__lt=timezone.now() + DAY - datetime.timedelta(minutes=6))
        assert MessageLog.objects.count() == quota
        assert RateLimit.objects.used_in_window(day_bucket(delivery_alias())) == quota

    def test_workers_give_back_what_they_took_of_a_large_quota_and_did_not_send(self) -> None:
        tokens = queue_many(33)
        env = processes.settings_env(quotas={delivery_alias(): {"per_day": 10_000}})
        for code, _, err in processes.workers_until_idle(2, self.server.port, **env):
            assert code == 0, err[-2000:]

        self.assert_each_delivered_once(tokens)
        assert RateLimit.objects.used_in_window(day_bucket(delivery_alias())) == 33

"""The queue's vocabulary on the QuerySet: due, claim, leases, retry_deferred, purging."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from mailer.models import (
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    DontSendEntry,
    Message,
    MessageLog,
    RateLimit,
    Status,
    Worker,
)

from .samples import batch, plain

pytestmark = pytest.mark.django_db(transaction=True)


def queued(count: int = 1, **options: Any) -> list[Message]:
    return Message.objects.enqueue(batch(count), **options)


def ago(**delta: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(**delta)


class TestContractNames:
    def test_priority_constants_and_result_codes_keep_django_mailers_values(self) -> None:
        assert (PRIORITY_HIGH, PRIORITY_MEDIUM, PRIORITY_LOW, PRIORITY_DEFERRED) == (1, 2, 3, 4)
        assert (RESULT_SUCCESS, RESULT_DONT_SEND, RESULT_FAILURE) == ("1", "2", "3")
        tables = {m._meta.db_table for m in (Message, MessageLog, DontSendEntry)}
        assert tables == {"mailer_message", "mailer_messagelog", "mailer_dontsendentry"}

    def test_priority_managers_select_what_waits_at_that_priority(self) -> None:
        queued(2, priority="high")
        queued(1, priority="medium")
        queued(3, priority="low")
        queued(1, priority="deferred")
        assert Message.objects.high_priority().count() == 2
        assert Message.objects.medium_priority().count() == 1
        assert Message.objects.low_priority().count() == 3
        assert Message.objects.non_deferred().count() == 6
        assert Message.objects.deferred().count() == 1

    def test_message_properties_read_the_stored_email(self) -> None:
        (row,) = Message.objects.enqueue([plain(to=["x@example.com"])])
        assert row.to_addresses == ["x@example.com"]
        assert row.subject.startswith("Hello tok-")
        assert row.email is not None and row.email.to == ["x@example.com"]
        assert row.when_added <= timezone.now() and row.retry_count == 0

    def test_defer_counts_a_failed_attempt_and_schedules_the_next(self) -> None:
        (row,) = queued()
        row.defer()
        row.refresh_from_db()
        assert row.status == Status.DEFERRED
        assert row.retry_count == 1
        assert row.due_at is not None and row.due_at > timezone.now()

    def test_defer_fails_a_message_whose_retries_are_spent(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_RETRIES = 0
        (row,) = queued()
        row.defer()
        row.refresh_from_db()
        assert row.status == Status.FAILED
        assert "MAILER_EMAIL_MAX_RETRIES" in row.last_reply

    def test_an_undecodable_row_has_no_email_but_still_prints(self) -> None:
        (row,) = queued()
        Message.objects.filter(pk=row.pk).update(message_data="not json")
        row.refresh_from_db()
        assert row.email is None
        assert row.to_addresses == [] and row.subject == ""
        assert str(row) == f"Message #{row.pk}"

    def test_dont_send_entries_match_case_insensitively(self) -> None:
        DontSendEntry.objects.create(to_address="Stop@Example.com")
        assert DontSendEntry.objects.has_address("stop@example.COM")
        assert DontSendEntry.objects.has_address("Someone <STOP@example.com>")
        assert not DontSendEntry.objects.has_address("go@example.com")
        assert DontSendEntry.objects.get().when_added is not None


class TestRetryDeferred:
    def test_it_makes_deferred_mail_due_now_keeping_its_priority(self) -> None:
        rows = queued(2, priority="high")
        Message.objects.update(
            status=Status.DEFERRED, due_at=timezone.now() + datetime.timedelta(days=1)
        )
        assert Message.objects.retry_deferred() == 2
        assert Message.objects.due().count() == 2
        assert set(Message.objects.values_list("priority", flat=True)) == {PRIORITY_HIGH}
        assert {r.pk for r in rows} == set(Message.objects.values_list("pk", flat=True))

    def test_it_can_set_a_new_priority(self) -> None:
        queued(1, priority="deferred")
        assert Message.objects.retry_deferred(new_priority=PRIORITY_LOW) == 1
        assert Message.objects.get().priority == PRIORITY_LOW

    def test_messages_past_max_retries_are_failed_instead(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_RETRIES = 2
        queued(2, priority="deferred")
        spent = Message.objects.first()
        assert spent is not None
        Message.objects.filter(pk=spent.pk).update(retry_count=3)
        assert Message.objects.retry_deferred() == 1
        spent.refresh_from_db()
        assert spent.status == Status.FAILED
        log = MessageLog.objects.get(queue_id=spent.pk)
        assert (log.result, log.log_message) == (RESULT_FAILURE, spent.last_reply)

    def test_it_can_be_limited_by_age_and_count(self) -> None:
        queued(5, priority="deferred")
        Message.objects.filter(
            pk__in=list(Message.objects.values_list("pk", flat=True)[:2])
        ).update(when_added=ago(days=3))
        assert Message.objects.retry_deferred(max_age=datetime.timedelta(days=1), limit=2) == 2
        assert Message.objects.deferred().count() == 3
        requeued_ages = Message.objects.due().values_list("when_added", flat=True)
        assert all(when > ago(days=1) for when in requeued_ages)


class TestClaims:
    def test_a_claim_takes_due_mail_in_send_order_and_marks_it(self) -> None:
        low = queued(1, priority="low")
        high = queued(1, priority="high")
        queued(1, send_at=timezone.now() + datetime.timedelta(hours=1))
        rows = Message.objects.claim("host:1:1/0", 10, lease=30)
        assert [r.pk for r in rows] == [high[0].pk, low[0].pk]
        assert all(r.status == Status.CLAIMED and r.claimed_by == "host:1:1/0" for r in rows)
        assert Message.objects.claimed().count() == 2
        assert Message.objects.claim("host:2:2/0", 10, lease=30) == []

    def test_a_claim_returns_only_the_rows_it_took(self) -> None:
        queued(6)
        first = Message.objects.claim("host:1:1/0", 3, lease=30)
        second = Message.objects.claim("host:1:1/0", 3, lease=30)
        assert len(first) == len(second) == 3
        assert not {r.pk for r in first} & {r.pk for r in second}

    def test_concurrent_claims_never_share_a_row(self) -> None:
        queued(200)
        taken: list[list[int]] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            try:
                while rows := Message.objects.claim(f"host:{n}:1/0", 7, lease=30):
                    with lock:
                        taken.append([r.pk for r in rows])
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [pk for chunk in taken for pk in chunk]
        assert len(ids) == len(set(ids)) == 200

    @pytest.mark.sqlite_only
    def test_older_sqlite_without_returning_claims_the_same_way(self, monkeypatch: Any) -> None:
        import mailer.queue.sql.sqlite

        monkeypatch.setattr(mailer.queue.sql.sqlite.sqlite3, "sqlite_version_info", (3, 31, 0))
        queued(5)
        first = Message.objects.claim("host:1:1/0", 3, lease=30)
        second = Message.objects.claim("host:1:1/0", 3, lease=30)
        assert (len(first), len(second)) == (3, 2)
        assert {r.claimed_by for r in first + second} == {"host:1:1/0"}

    def test_leases_are_renewed_released_and_reclaimed_when_expired(self) -> None:
        queued(3)
        rows = Message.objects.claim("host:1:1/0", 3, lease=1)
        assert Message.objects.renew_leases("host:1:1", 60) == 3  # the worker renews all its slots
        assert Message.objects.reclaim_expired() == 0
        Message.objects.filter(pk=rows[0].pk).update(lease_expires_at=ago(seconds=1))
        assert Message.objects.reclaim_expired() == 1
        assert Message.objects.release("host:1:1", [rows[1].pk]) == 1
        assert Message.objects.due().count() == 2
        assert Message.objects.claimed().get().pk == rows[2].pk

    def test_claim_owners_on_a_host_are_listed_by_worker(self) -> None:
        queued(3)
        Message.objects.claim("vm:10:5/0", 1, lease=30)
        Message.objects.claim("vm:10:5/1", 1, lease=30)
        Message.objects.claim("other:11:5/0", 1, lease=30)
        assert Message.objects.claim_owners("vm") == {"vm:10:5"}

    def test_next_due_at_is_the_earliest_scheduled_time(self) -> None:
        soon = timezone.now() + datetime.timedelta(minutes=5)
        queued(1, send_at=soon + datetime.timedelta(minutes=5))
        queued(1, send_at=soon)
        assert Message.objects.next_due_at() == soon
        assert Message.objects.scheduled().count() == 2


class TestLogPurge:
    def make_log(self, result: str, days_old: float) -> MessageLog:
        return MessageLog.objects.create(
            when_added=ago(days=days_old),
            when_attempted=ago(days=days_old),
            priority=PRIORITY_MEDIUM,
            result=result,
            log_message="",
        )

    def test_purge_removes_old_successes_by_default(self) -> None:
        self.make_log(RESULT_SUCCESS, 10)
        self.make_log(RESULT_SUCCESS, 1)
        self.make_log(RESULT_FAILURE, 10)
        assert MessageLog.objects.purge_old_entries(7) == 1
        assert MessageLog.objects.count() == 2

    def test_purge_works_in_batches_and_honours_result_codes(self) -> None:
        for _ in range(7):
            self.make_log(RESULT_FAILURE, 30)
        self.make_log(RESULT_SUCCESS, 30)
        deleted = MessageLog.objects.purge_old_entries(7, [RESULT_FAILURE], batch_size=3)
        assert deleted == 7
        assert list(MessageLog.objects.values_list("result", flat=True)) == [RESULT_SUCCESS]


class TestRateLimitAndWorkers:
    def test_the_shared_bucket_grants_at_most_its_rate(self) -> None:
        granted, _ = RateLimit.objects.take("global", 5, 100)
        assert granted == 5  # one second's worth
        granted, wait = RateLimit.objects.take("global", 5, 1)
        assert granted == 0 and 0 < wait <= 0.2
        RateLimit.objects.filter(name="global").update(updated_at=ago(seconds=2))
        assert RateLimit.objects.take("global", 5, 100)[0] == 5

    def test_workers_beat_and_are_alive_while_they_beat(self) -> None:
        Worker.objects.beat("vm:1:2", "vm", 1, concurrency=4, counts=(3, 1, 0))
        Worker.objects.beat("vm:1:2", "vm", 1, concurrency=4, counts=(5, 1, 0))
        row = Worker.objects.get()
        assert (row.sent, row.deferred, row.concurrency) == (5, 1, 4)
        assert Worker.objects.alive().count() == 1
        Worker.objects.update(heartbeat_at=ago(minutes=5))
        assert Worker.objects.alive().count() == 0

"""``manage.py mailer_status`` and ``mailer.health``: what an operator or a monitor sees."""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.models import (
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    DeliveryRun,
    Message,
    MessageLog,
    Status,
    Worker,
)
from mailer.queue import health

from . import processes
from .samples import plain


def ago(**delta: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(**delta)


def soon(**delta: float) -> datetime.datetime:
    return timezone.now() + datetime.timedelta(**delta)


def queue(status: str = Status.QUEUED, due_at: datetime.datetime | None = None) -> Message:
    """A message in ``status``, due at ``due_at``; queued ones default to now."""
    if due_at is None and status in (Status.QUEUED, Status.CLAIMED):
        due_at = timezone.now()
    (row,) = Message.objects.enqueue([plain()])
    Message.objects.filter(pk=row.pk).update(status=status, due_at=due_at)
    row.refresh_from_db()
    return row


def log(result: str, when: datetime.datetime, count: int = 1) -> None:
    MessageLog.objects.bulk_create(
        MessageLog(
            when_added=when,
            priority=PRIORITY_MEDIUM,
            when_attempted=when,
            result=result,
            log_message="",
        )
        for _ in range(count)
    )


def worker(name: str, heartbeat: datetime.datetime, concurrency: int = 1) -> None:
    Worker.objects.create(
        name=name, hostname="mail1", pid=4242, heartbeat_at=heartbeat, concurrency=concurrency
    )


def run(kind: str, finished: datetime.datetime, counts: tuple[int, int, int]) -> None:
    """A run of ``kind`` on mail1 that finished at ``finished``, having done ``counts``."""
    DeliveryRun.objects.record(
        kind, "mail1", 2388, started_at=finished, counts=counts, finished_at=finished
    )


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("mailer_status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
class TestHealth:
    def test_counts_every_state(self) -> None:
        for _ in range(2):
            queue()
        queue(due_at=soon(hours=1))  # scheduled
        queue(Status.CLAIMED)
        queue(Status.DEFERRED, soon(minutes=10))  # next attempt in 10 minutes
        queue(Status.DEFERRED)  # held: no next attempt
        for _ in range(3):
            queue(Status.FAILED)
        assert health.check().states == {
            "queued": 2,
            "scheduled": 1,
            "sending": 1,
            "deferred": 1,
            "held": 1,
            "failed": 3,
        }

    def test_the_oldest_due_message_is_the_one_due_longest_ago(self) -> None:
        now = timezone.now()
        queue(due_at=now - datetime.timedelta(seconds=90))
        retry = now - datetime.timedelta(seconds=300)
        queue(Status.DEFERRED, retry)  # a retry that fell due 5 minutes ago
        queue(due_at=now + datetime.timedelta(hours=1))  # scheduled: not due
        queue(Status.CLAIMED, now - datetime.timedelta(hours=1))  # being sent: not waiting
        queue(Status.FAILED)
        found = health.check(now)
        assert found.oldest_due_at == retry
        assert found.oldest_due_age == 300

    def test_nothing_due_has_no_age(self) -> None:
        queue(due_at=soon(minutes=5))
        queue(Status.CLAIMED, ago(minutes=10))
        found = health.check()
        assert found.oldest_due_at is None
        assert found.oldest_due_age is None

    def test_attempts_of_the_last_hour_and_day(self) -> None:
        log(RESULT_SUCCESS, ago(minutes=30), 3)
        log(RESULT_FAILURE, ago(minutes=20))
        log(RESULT_SUCCESS, ago(hours=5), 2)
        log(RESULT_FAILURE, ago(hours=20), 2)
        log(RESULT_FAILURE, ago(days=2), 5)  # older than a day
        log(RESULT_DONT_SEND, ago(minutes=10))  # no attempt
        found = health.check()
        assert found.last_hour == health.Attempts(total=4, failed=1)
        assert found.last_hour.failure_rate == 0.25
        assert found.last_day == health.Attempts(total=8, failed=3)
        assert health.Attempts(0, 0).failure_rate is None

    def test_workers_most_recent_first_and_whether_alive(self, settings: Any) -> None:
        settings.MAILER_LEASE_SECONDS = 60
        worker("mail1:1:old", ago(minutes=30))
        worker("mail1:2:new", ago(seconds=5), concurrency=4)
        found = health.check()
        assert [(w.name, w.alive, w.concurrency) for w in found.workers] == [
            ("mail1:2:new", True, 4),
            ("mail1:1:old", False, 1),
        ]
        assert found.alive_workers == 1

    def test_runs_most_recently_finished_first_and_the_age_of_the_last(self) -> None:
        run("send_mail", ago(minutes=3), (3, 1, 0))
        run("task", ago(seconds=30), (0, 0, 0))
        found = health.check()
        assert [(r.kind, r.sent, r.delivered_at is None) for r in found.runs] == [
            ("task", 0, True),
            ("send_mail", 3, False),
        ]
        assert 30 <= (found.last_run_age or 0) < 90

    def test_no_run_has_no_age(self) -> None:
        assert health.check().last_run_age is None

    def test_four_queries_whatever_the_size_and_the_log_read_for_one_day_only(self) -> None:
        for _ in range(3):
            queue()
        log(RESULT_SUCCESS, ago(days=3), 50)
        worker("mail1:1:x", timezone.now())
        run("send_mail", timezone.now(), (1, 0, 0))
        with CaptureQueriesContext(connection) as queries:
            health.check()
        assert len(queries.captured_queries) == 4
        (on_log,) = [q["sql"] for q in queries.captured_queries if "mailer_messagelog" in q["sql"]]
        assert "when_attempted" in on_log.split("WHERE", 1)[1]


@pytest.mark.django_db
class TestCommand:
    def test_reports_states_age_attempts_and_workers(self) -> None:
        queue(due_at=ago(seconds=42))
        queue(Status.FAILED)
        log(RESULT_SUCCESS, ago(minutes=5), 3)
        log(RESULT_FAILURE, ago(minutes=5))
        worker("mail1:7:abc", timezone.now(), concurrency=2)
        out = status()
        assert "queue: 1 queued, 0 scheduled, 0 sending, 0 deferred, 0 held, 1 failed" in out
        assert "oldest due: waiting 4" in out  # 42 s, or a little more
        assert "last hour: 4 attempts, 1 deferred or failed (25.0%)" in out
        assert "workers: 1 alive" in out
        assert "mail1:7:abc (mail1, pid 4242): 2 connection(s), last heartbeat" in out

    def test_reports_the_runs_cron_starts(self) -> None:
        assert "runs: none finished (send_mail, send_all(), Tasks drains)" in status()
        run("send_mail", ago(seconds=40), (12, 1, 0))
        run("send_all", ago(minutes=5), (0, 0, 0))
        out = status()
        assert "runs: last finished 4" in out  # 40 s, or a little more
        assert "  send_mail on mail1 (pid 2388): finished 4" in out
        assert "ago: 12 sent, 1 deferred, 0 failed" in out
        assert "  send_all on mail1 (pid 2388): finished 5 min ago; nothing delivered yet" in out

    def test_one_attempt_is_singular(self) -> None:
        log(RESULT_SUCCESS, ago(minutes=5))
        assert "last hour: 1 attempt, 0 deferred or failed (0.0%)" in status()

    def test_json_for_monitoring(self) -> None:
        queue(due_at=ago(seconds=42))
        report = json.loads(status("--json"))
        assert report["states"]["queued"] == 1
        assert report["oldest_due_age"] >= 42
        assert report["last_day"] == {
            "attempts": 0,
            "failed": 0,
            "failure_rate": None,
            "refused_recipients": 0,
        }
        assert report["workers"] == [] and report["alive_workers"] == 0
        assert report["runs"] == [] and report["last_run_age"] is None
        assert report["problems"] == []

    def test_json_lists_the_runs(self) -> None:
        run("send_mail", ago(seconds=40), (12, 1, 0))
        (found,) = json.loads(status("--json"))["runs"]
        assert found["kind"] == "send_mail" and found["hostname"] == "mail1"
        assert (found["sent"], found["deferred"], found["failed"]) == (12, 1, 0)
        assert found["finished_age"] >= 40 and found["delivered_at"] == found["finished_at"]

    def test_within_every_limit_it_succeeds(self) -> None:
        queue(due_at=ago(seconds=10))
        queue(Status.FAILED)
        worker("mail1:1:x", timezone.now())
        run("send_mail", ago(seconds=10), (1, 0, 0))
        status("--max-age", "60", "--max-failed", "1", "--min-workers", "1", "--max-run-age", "60")

    @pytest.mark.parametrize(
        ("limit", "reason"),
        [
            (["--max-age", "60"], "waited 1"),
            (["--max-failed", "0"], "1 messages failed, more than --max-failed 0"),
            (["--min-workers", "1"], "0 workers alive, fewer than --min-workers 1"),
            (["--max-run-age", "60"], "no run has finished, --max-run-age 60"),
        ],
    )
    def test_a_limit_crossed_exits_with_2_and_says_why(self, limit: list[str], reason: str) -> None:
        queue(due_at=ago(seconds=120))
        queue(Status.FAILED)
        with pytest.raises(CommandError) as raised:
            status(*limit)
        assert raised.value.returncode == 2
        assert reason in str(raised.value)

    def test_a_run_that_finished_too_long_ago_is_a_limit_crossed(self) -> None:
        run("send_mail", ago(minutes=10), (1, 0, 0))
        with pytest.raises(CommandError) as raised:
            status("--max-run-age", "300")
        assert raised.value.returncode == 2
        assert "the last run finished 6" in str(raised.value)
        assert "more than --max-run-age 300" in str(raised.value)

    def test_json_lists_the_problems_too(self) -> None:
        queue(Status.FAILED)
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("mailer_status", "--json", "--max-failed", "0", stdout=out)
        assert json.loads(out.getvalue())["problems"] == [
            "1 messages failed, more than --max-failed 0"
        ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_exit_status_of_the_real_command(smtp_server: Any) -> None:
    queue(Status.FAILED)
    fine = processes.run(["mailer_status", "--max-failed", "1"], smtp_server.port)
    assert fine.returncode == 0, fine.stderr
    assert "1 failed" in fine.stdout
    alert = processes.run(["mailer_status", "--max-failed", "0"], smtp_server.port)
    assert alert.returncode == 2
    assert "more than --max-failed 0" in alert.stderr

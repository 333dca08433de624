"""Delivery through Django Tasks, with django-tasks-db's database backend and its worker.

Where django-tasks-db is not installed these tests are deselected (marker "tasks");
scripts/test.sh installs it. The Tasks modules are imported inside the tests for that
reason.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from mailer import send_mail
from mailer.models import DeliveryRun, Message, Status, TaskWakeup

from . import processes
from .assertions import MailAssertions
from .samples import batch, plain, token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.tasks]

DRAIN = "mailer.tasks.send_queued_mail"


class Rollback(Exception):
    pass


def tasks() -> list[Any]:
    """Every drain task the database backend holds, oldest first."""
    from django_tasks_db.models import DBTaskResult

    return list(DBTaskResult.objects.filter(task_path=DRAIN).order_by("enqueued_at"))


def waiting(*, later: bool = False) -> list[Any]:
    """Drain tasks waiting to run: as soon as a worker takes them, or at a time to come."""
    from django_tasks_db.models import get_date_max

    now, unset = timezone.now(), get_date_max()  # run_after of a task that has none
    return [t for t in tasks() if t.status == "READY" and (now < t.run_after < unset) == later]


def drain() -> dict[str, int]:
    """Run the drain task here, as a Tasks worker would."""
    from mailer.tasks import send_queued_mail

    return send_queued_mail.call()


@pytest.fixture
def on_commit(settings: Any) -> None:
    settings.MAILER_TASKS_ENQUEUE_ON_COMMIT = True


class TestEnqueueOnCommit(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, on_commit: None) -> None:
        self.server = smtp

    def test_queueing_mail_enqueues_one_drain_when_the_transaction_commits(self) -> None:
        with transaction.atomic():
            Message.objects.enqueue([plain(), plain()])
            assert tasks() == [], "enqueued before the commit"
        (task,) = waiting()
        assert task.args_kwargs == {"args": [], "kwargs": {"using": "default"}}

    def test_mail_that_rolls_back_enqueues_nothing(self) -> None:
        with pytest.raises(Rollback), transaction.atomic():
            send_mail("Hi", "Body", "a@example.com", ["b@example.com"])
            raise Rollback
        assert tasks() == []
        assert not TaskWakeup.objects.exists()

    def test_the_setting_off_enqueues_nothing(self, settings: Any) -> None:
        settings.MAILER_TASKS_ENQUEUE_ON_COMMIT = False
        send_mail("Hi", "Body", "a@example.com", ["b@example.com"])
        assert tasks() == []

    def test_many_commits_share_one_waiting_drain(self) -> None:
        for message in batch(20):
            with transaction.atomic():
                Message.objects.enqueue([message])
        assert len(tasks()) == 1

    def test_mail_queued_once_a_drain_has_started_enqueues_the_next(self) -> None:
        first, second = plain(), plain()
        Message.objects.enqueue([first])
        assert drain() == {"sent": 1, "deferred": 0, "failed": 0}
        Message.objects.enqueue([second])
        assert len(tasks()) == 2
        assert drain() == {"sent": 1, "deferred": 0, "failed": 0}
        self.assert_each_delivered_once([first, second])

    def test_a_drain_leaves_its_run_for_the_dashboard_under_the_name_task(self) -> None:
        Message.objects.enqueue([plain()])
        drain()
        (run,) = DeliveryRun.objects.all()
        assert (run.kind, run.sent, run.deferred, run.failed) == ("task", 1, 0, 0)

    def test_a_drain_waiting_too_long_is_taken_for_lost_and_enqueued_again(self) -> None:
        from mailer.tasks import STALE_AFTER

        Message.objects.enqueue([plain()])
        TaskWakeup.objects.update(run_at=timezone.now() - STALE_AFTER - datetime.timedelta(1))
        Message.objects.enqueue([plain()])
        assert len(tasks()) == 2
        Message.objects.enqueue([plain()])
        assert len(tasks()) == 2, "the replacement is not stale"

    def test_scheduled_mail_enqueues_a_drain_for_its_time_only(self) -> None:
        send_at = timezone.now() + datetime.timedelta(hours=2)
        Message.objects.enqueue([plain()], send_at=send_at)
        assert waiting() == []
        (later,) = waiting(later=True)
        assert later.run_after == send_at
        earlier = send_at - datetime.timedelta(hours=1)
        Message.objects.enqueue([plain()], send_at=earlier)
        assert sorted(t.run_after for t in waiting(later=True)) == [earlier, send_at]
        Message.objects.enqueue([plain()], send_at=send_at)
        assert len(waiting(later=True)) == 2, "a drain runs before then already"

    def test_a_drain_run_before_its_time_by_a_slow_clock_still_plans_the_next(self) -> None:
        from mailer.tasks import send_queued_mail

        send_at = timezone.now() + datetime.timedelta(hours=2)
        Message.objects.enqueue([plain()], send_at=send_at)
        (later,) = waiting(later=True)
        assert later.args_kwargs["kwargs"] == {"using": "default", "planned": send_at.isoformat()}
        # A worker whose clock is behind runs it now: the mail is not due by its clock...
        send_queued_mail.call(**later.args_kwargs["kwargs"])
        # ...but the wake-up it was planned for is served, so the next one is planned anew.
        assert [t.run_after for t in waiting(later=True)] == [send_at, send_at]

    def test_held_mail_needs_no_drain(self) -> None:
        Message.objects.enqueue([plain()], priority="deferred")
        assert tasks() == []

    def test_after_a_drain_deferred_mail_has_a_drain_when_it_falls_due(self) -> None:
        busy = plain()
        Message.objects.enqueue([busy])
        self.server.faults.transient_first = 1
        assert drain() == {"sent": 0, "deferred": 1, "failed": 0}
        row = self.assert_deferred_with(busy, 451)
        (later,) = waiting(later=True)
        assert later.run_after == row.due_at

    def test_a_drain_stopped_with_mail_due_looks_again_later(self, settings: Any) -> None:
        from mailer.tasks import RESUME_AFTER

        settings.MAILER_EMAIL_MAX_BATCH = 1
        Message.objects.enqueue(batch(2))
        before = timezone.now()
        assert drain()["sent"] == 1
        (later,) = waiting(later=True)
        assert before + RESUME_AFTER <= later.run_after <= timezone.now() + RESUME_AFTER

    def test_an_empty_queue_after_a_drain_needs_no_other(self) -> None:
        Message.objects.enqueue([plain()])
        drain()
        assert not TaskWakeup.objects.exists()
        assert waiting(later=True) == []

    def test_retry_deferred_enqueues_a_drain_for_the_retried_mail(self) -> None:
        Message.objects.enqueue([plain()], priority="deferred")
        call_command("retry_deferred", verbosity=0)
        assert len(waiting()) == 1

    def test_a_backend_that_fails_to_enqueue_leaves_the_mail_queued_and_the_next_try_open(
        self, settings: Any, caplog: Any
    ) -> None:
        settings.TASKS = {"default": {"BACKEND": "tests.tasks_backends.BrokenBackend"}}
        with transaction.atomic():
            (row,) = Message.objects.enqueue([plain()])
        assert Message.objects.get(pk=row.pk).status == Status.QUEUED
        assert "cannot enqueue" in caplog.text
        assert not TaskWakeup.objects.exists(), "the next mail queued tries again"

    def test_with_the_immediate_backend_mail_goes_out_on_commit(self, settings: Any) -> None:
        from mailer.compat import HAS_TASKS

        package = "django.tasks" if HAS_TASKS else "django_tasks"  # DJANGO_COMPAT(<6.0)
        settings.TASKS = {"default": {"BACKEND": f"{package}.backends.immediate.ImmediateBackend"}}
        message = plain()
        with transaction.atomic():
            Message.objects.enqueue([message])
            self.assert_not_delivered(message)
        self.assert_delivered_once(message)
        self.assert_queue_empty()


@pytest.mark.slow
class TestDatabaseWorker(MailAssertions):
    """django-tasks-db's db_worker, in a real process, delivers what is queued."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, on_commit: None) -> None:
        self.server = smtp

    def test_mail_committed_is_delivered_by_the_tasks_worker(self) -> None:
        worker = processes.start(
            ["db_worker", "--no-startup-delay", "--interval", "0.1"], self.server.port
        )
        try:
            messages = batch(3)
            with transaction.atomic():
                Message.objects.enqueue(messages)
            self.server.wait_for(3, timeout=60)
        finally:
            code, _, err = processes.stop(worker)
        assert code == 0, err
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()
        (task,) = tasks()
        assert task.status == "SUCCESSFUL", task.traceback
        assert task.return_value == {"sent": 3, "deferred": 0, "failed": 0}

    def test_a_burst_of_commits_is_delivered_by_one_drain(self) -> None:
        messages = batch(20)
        for message in messages:
            send_mail(message.subject, message.body, message.from_email, message.to)
        assert len(tasks()) == 1
        done = processes.run(["db_worker", "--batch", "--no-startup-delay"], self.server.port)
        assert done.returncode == 0, done.stderr
        self.assert_each_delivered_once([token_of(m) for m in messages])
        self.assert_queue_empty()
        (task,) = tasks()
        assert task.status == "SUCCESSFUL", task.traceback
        assert task.return_value == {"sent": 20, "deferred": 0, "failed": 0}


class TestDrainConnections(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_drain_with_enough_mail_delivers_over_several_connections(self) -> None:
        messages = batch(80)
        Message.objects.enqueue(messages)
        assert drain() == {"sent": 80, "deferred": 0, "failed": 0}
        self.assert_each_delivered_once(messages)
        assert self.server.connections == 2

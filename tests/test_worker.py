"""Workers in real processes: runmailer, several at once, killed, stopped, woken."""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from mailer.delivery.recorder import EXPOSED_LIMIT
from mailer.models import Message, MessageLog, Status
from mailer.models import Worker as WorkerRow
from mailer.runner.worker import MailWorker

from . import processes
from .assertions import MailAssertions
from .processes import settings_env
from .samples import batch, plain, token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def vendor() -> str:
    return connection.vendor


def queue_many(count: int) -> list[str]:
    """Queue ``count`` messages in one bulk insert; return their tokens."""
    messages = batch(count)
    Message.objects.enqueue(messages)
    return [token_of(m) for m in messages]


class TestRunmailer(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_it_delivers_what_is_queued_and_can_exit_when_idle(self) -> None:
        tokens = queue_many(50)
        done = processes.run(["runmailer", "--exit-when-idle"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert "sent 50, deferred 0, failed 0" in done.stdout
        self.assert_each_delivered_once(tokens)
        self.assert_queue_empty()

    def test_concurrency_delivers_over_that_many_reused_connections(self) -> None:
        self.server.faults.data_delay = 0.05
        tokens = queue_many(80)
        done = processes.run(
            ["runmailer", "--concurrency", "4", "--exit-when-idle"], self.server.port
        )
        assert done.returncode == 0, done.stderr
        self.assert_each_delivered_once(tokens)
        assert self.server.connections == 4

    def test_it_registers_a_heartbeat_while_running_and_leaves_no_trace_after(self) -> None:
        worker = processes.start(["runmailer"], self.server.port)
        try:
            processes.wait_until(lambda: WorkerRow.objects.exists(), timeout=20)
            row = WorkerRow.objects.get()
            assert row.hostname == socket.gethostname()
            assert row.pid == worker.pid
        finally:
            code, _, err = processes.stop(worker)
        assert code == 0, err
        assert not WorkerRow.objects.exists()

    def test_sigterm_finishes_messages_in_hand_and_gives_back_the_rest(self) -> None:
        self.server.faults.data_delay = 0.02
        tokens = queue_many(300)
        worker = processes.start(["runmailer", "--concurrency", "2"], self.server.port)
        processes.wait_until(lambda: len(self.server.received) >= 30, timeout=30)
        started = time.monotonic()
        code, _, err = processes.stop(worker, signal.SIGTERM)
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert not Message.objects.claimed().exists(), "claims must be released on exit"
        delivered = set(self.server.tokens())
        waiting = {t for t in tokens if t not in delivered}
        assert Message.objects.count() == len(waiting)
        assert MessageLog.objects.count() == len(delivered)
        arrived = self.server.tokens()
        assert len(arrived) == len(set(arrived)), "nothing may be delivered twice"

    def test_a_killed_worker_loses_nothing_and_cron_takes_its_claims_back_at_once(self) -> None:
        self.server.faults.data_delay = 0.02
        tokens = queue_many(200)
        worker = processes.start(["runmailer"], self.server.port, **settings_env(lease_seconds=600))
        processes.wait_until(lambda: len(self.server.received) >= 20, timeout=30)
        processes.stop(worker, signal.SIGKILL)
        assert Message.objects.claimed().exists(), "the dead worker held claims"
        # A lease of 600 s has not expired, but the owner's process is gone:
        done = processes.run(["send_mail"], self.server.port, timeout=120)
        assert done.returncode == 0, done.stderr
        arrived = self.server.tokens()
        assert set(tokens) <= set(arrived), "every message is delivered"
        self.assert_queue_empty()
        doubled = {t for t in arrived if arrived.count(t) > 1}
        for token in doubled:  # sent, not yet recorded when the worker died
            ids = {c.message["Message-ID"] for c in self.server.by_token(token)}
            assert len(ids) == 1, "a second copy carries the same Message-ID"
        assert len(doubled) <= EXPOSED_LIMIT  # at most what the recorder had not written

    def test_claims_of_a_lost_machine_are_delivered_after_their_lease_expires(self) -> None:
        tokens = queue_many(5)
        past = timezone.now() - timezone.timedelta(seconds=1)
        Message.objects.update(
            status=Status.CLAIMED, claimed_by="lost-host:4242:1/0", lease_expires_at=past
        )
        done = processes.run(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        self.assert_each_delivered_once(tokens)

    def test_live_claims_of_another_machine_are_left_alone(self) -> None:
        queue_many(3)
        future = timezone.now() + timezone.timedelta(minutes=5)
        Message.objects.update(
            status=Status.CLAIMED, claimed_by="other-host:4242:1/0", lease_expires_at=future
        )
        done = processes.run(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert not self.server.received
        assert Message.objects.claimed().count() == 3


class TestStopping:
    def test_a_second_stop_request_returns_at_once_whatever_the_first_holds(self) -> None:
        # A second SIGTERM may interrupt the first one's handler inside stop.set(), holding
        # its lock: the second handler must not wait for that lock (it would wait for ever).
        worker = MailWorker(concurrency=1)
        worker.request_stop()
        assert worker.stop.is_set()
        returned = threading.Event()
        with worker.stop._cond:  # as the interrupted first handler would hold it
            asker = threading.Thread(target=lambda: (worker.request_stop(), returned.set()))
            asker.start()
            assert returned.wait(timeout=10), "the second request waited for the first's lock"
        asker.join()


class TestManyWorkers(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    @pytest.mark.oldest_django  # 10,000 messages; the claims are the database's work
    def test_several_workers_deliver_each_message_exactly_once(self) -> None:
        count, workers = (10_000, 4) if vendor() != "sqlite" else (2_000, 2)
        tokens = queue_many(count)
        for code, _, err in processes.workers_until_idle(workers, self.server.port, timeout=300):
            assert code == 0, err[-2000:]
            assert "database is locked" not in err
        self.assert_each_delivered_once(tokens)
        self.assert_queue_empty()
        assert MessageLog.objects.count() == count

    def test_send_mail_and_runmailer_together_deliver_each_message_once(self) -> None:
        tokens = queue_many(600)
        worker = processes.start(["runmailer", "--exit-when-idle"], self.server.port)
        crons = [processes.start(["send_mail"], self.server.port) for _ in range(2)]
        for proc in [worker, *crons]:
            code, _, err = processes.wait(proc, timeout=120)
            assert code == 0, err[-2000:]
            assert "database is locked" not in err
        self.assert_each_delivered_once(tokens)

    def test_the_global_rate_limit_holds_across_workers(self) -> None:
        tokens = queue_many(30)
        env = settings_env(rate_limit=20)
        started = time.monotonic()
        for code, _, err in processes.workers_until_idle(2, self.server.port, **env):
            assert code == 0, err[-2000:]
        elapsed = time.monotonic() - started
        self.assert_each_delivered_once(tokens)
        # 20/s with a one-second burst: 30 messages need at least half a second more.
        assert elapsed >= 0.5


class TestWakeUp(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    @pytest.mark.postgres_only
    def test_postgresql_notify_wakes_an_idle_worker_at_once(self) -> None:
        slow_polls = settings_env(poll_interval=30, empty_queue_sleep=30)
        worker = processes.start(["runmailer_pg"], self.server.port, **slow_polls)
        try:
            processes.wait_until(lambda: WorkerRow.objects.exists(), timeout=20)
            time.sleep(0.5)  # let the first poll pass: only NOTIFY can wake it now
            message = plain()
            queued_at = time.monotonic()
            message.send()
            processes.wait_until(lambda: self.server.received, timeout=10, interval=0.005)
            assert time.monotonic() - queued_at < 2
            self.assert_delivered_once(message)
        finally:
            code, _, err = processes.stop(worker)
        assert code == 0, err

    def test_scheduled_mail_is_sent_when_due_without_any_notification(self) -> None:
        slow_polls = settings_env(poll_interval=30, empty_queue_sleep=30, notify=False)
        message = plain()
        Message.objects.enqueue([message], send_at=timezone.now() + timezone.timedelta(seconds=2))
        worker = processes.start(["runmailer"], self.server.port, **slow_polls)
        try:
            processes.wait_until(lambda: self.server.received, timeout=15)
            self.assert_delivered_once(message)
        finally:
            code, _, err = processes.stop(worker)
        assert code == 0, err

    @pytest.mark.not_postgres
    def test_runmailer_pg_refuses_other_databases(self) -> None:
        done = processes.run(["runmailer_pg"], self.server.port)
        assert done.returncode != 0
        assert "needs PostgreSQL" in done.stderr

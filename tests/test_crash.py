"""Never twice: a killed worker sends again only what was in flight, and a worker that
cannot record stops sending.

Real worker processes (``send_mail``, ``runmailer --concurrency 4``) against the
test SMTP server: SIGKILLed at random moments, at full speed and against a server
that takes 100 ms per message, then started again; and a database that stops
answering in the middle of a drain (another process holds a lock on the queue,
past SQLite's busy timeout), or whose connections are cut.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from mailer.delivery.recorder import EXPOSED_LIMIT
from mailer.exceptions import DatabaseUnreachable
from mailer.models import Message, MessageLog

from . import processes
from .assertions import Kill, MailAssertions
from .samples import batch, token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SLOW = 0.1  # seconds the slow server takes to answer the end of DATA
GIVE_UP = 4  # MAILER_RECORD_TIMEOUT of the children (20 s by default)


def queue_many(count: int) -> list[str]:
    messages = batch(count)
    Message.objects.enqueue(messages)
    return [token_of(m) for m in messages]


def child_settings(**values: Any) -> dict[str, str]:
    """Settings for the children; on SQLite a busy timeout of one second, so that a lock
    held longer fails their statements instead of only delaying them."""
    env = processes.settings_env(record_timeout=GIVE_UP, **values)
    if connection.vendor == "sqlite":
        database = {**django_settings.DATABASES["default"]}
        database["OPTIONS"] = {**database.get("OPTIONS", {}), "timeout": 1}
        extra = json.loads(env["MAILER_TEST_SETTINGS"])
        env["MAILER_TEST_SETTINGS"] = json.dumps({**extra, "DATABASES": {"default": database}})
    return env


class TestKilled(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> Any:
        self.server = smtp
        yield
        # A message in flight at the last kill is still being answered: let it land here.
        processes.wait_until(lambda: not self.server.in_flight(), timeout=10)

    def kill_at(self, command: list[str], points: list[int], delay: float) -> list[Kill]:
        """Start ``command``, SIGKILL it once the server has taken ``point`` messages (and
        up to one slow reply more), for each point; what was in flight at each kill."""
        rng = random.Random()
        kills: list[Kill] = []
        for point in points:
            child = processes.start(command, self.server.port, **child_settings())
            try:
                processes.wait_until(
                    lambda p=point, c=child: len(self.server.received) >= p or c.poll() is not None,
                    timeout=60,
                    interval=0.002,
                )
                time.sleep(rng.uniform(0, delay))
            finally:
                if child.poll() is None:
                    child.kill()
                    kills.append(Kill(time.monotonic(), self.server.in_flight()))
                processes.wait(child, timeout=30)
        return kills

    @pytest.mark.parametrize("delay", [0.0, SLOW], ids=["full speed", "100 ms server"])
    def test_a_killed_send_mail_sends_again_only_its_crash_window(self, delay: float) -> None:
        self.server.faults.data_delay = delay
        count, kills = (400, 3) if not delay else (10, 2)
        tokens = queue_many(count)
        points = sorted(random.sample(range(count // 8, count * 7 // 8), kills))
        print("kill points:", points)  # shown if the test fails
        done = self.kill_at(["send_mail"], points, delay)
        final = processes.run(["send_mail"], self.server.port, timeout=120, **child_settings())
        assert final.returncode == 0, final.stderr[-2000:]
        assert done, "the drain ended before the first kill"
        self.assert_each_delivered(tokens)
        self.assert_queue_empty()
        if delay:  # one connection: what it had in flight, or its last reply not yet written
            self.assert_sent_again_only_what_was_in_flight(done, at_most=1, per_connection=1)
        else:
            self.assert_sent_again_only_what_was_in_flight(done, at_most=EXPOSED_LIMIT)

    @pytest.mark.parametrize("delay", [0.0, SLOW], ids=["full speed", "100 ms server"])
    def test_a_killed_runmailer_with_four_connections_sends_again_only_its_crash_window(
        self, delay: float
    ) -> None:
        self.server.faults.data_delay = delay
        count, kills = (400, 3) if not delay else (40, 2)
        tokens = queue_many(count)
        points = sorted(random.sample(range(count // 8, count * 7 // 8), kills))
        print("kill points:", points)
        command = ["runmailer", "--concurrency", "4"]
        done = self.kill_at(command, points, delay)
        final = processes.run(
            [*command, "--exit-when-idle"], self.server.port, timeout=120, **child_settings()
        )
        assert final.returncode == 0, final.stderr[-2000:]
        assert done, "the drain ended before the first kill"
        self.assert_each_delivered(tokens)
        self.assert_queue_empty()
        if delay:
            self.assert_sent_again_only_what_was_in_flight(done, at_most=4, per_connection=1)
        else:
            self.assert_sent_again_only_what_was_in_flight(done, at_most=EXPOSED_LIMIT)


class TestDatabaseStopsAnswering(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp
        # A steady stream long enough that the lock falls mid-drain: the locker takes
        # a moment to start, and a drain that ended before it proves nothing.
        self.server.faults.data_delay = 0.02

    def sent_after(self, moment: float) -> list[str]:
        with self.server.lock:
            return [r.token or "" for r in self.server.received if r.data_at > moment]

    def test_send_mail_stops_sending_gives_up_and_names_what_it_could_not_record(self) -> None:
        tokens = queue_many(600)
        child = processes.start(["send_mail"], self.server.port, **child_settings())
        try:
            processes.wait_until(lambda: len(self.server.received) >= 30, timeout=60)
            with processes.queue_locked() as locked_at:
                code, _, err = processes.wait(child, timeout=GIVE_UP + 20)
                took = time.monotonic() - locked_at
                sent = self.sent_after(locked_at)
        finally:
            if child.poll() is None:
                child.kill()
        assert code == 1, err[-2000:]
        assert took < GIVE_UP + 10, f"gave up after {took:.1f} s"
        assert len(sent) <= EXPOSED_LIMIT, f"{len(sent)} sent after recording stopped"
        last = err.strip().splitlines()[-1]
        said = re.search(r"database is unreachable .*: (\d+) accepted messages? could not", last)
        assert said, last
        logged = re.search(r"gave up recording (\d+) accepted message.*: (id .*)$", err, re.M)
        assert logged and logged.group(1) == said.group(1), err[-2000:]
        named = dict(re.findall(r"id (\d+) (<[^>]+>)", logged.group(2)))
        assert len(named) == int(said.group(1))
        # The database is back: the next run delivers the rest; only those named go twice.
        self.server.faults.data_delay = 0  # at full speed: it only has to arrive
        again = processes.run(["send_mail"], self.server.port, timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]
        self.assert_each_delivered(tokens)
        self.assert_queue_empty()
        arrived = self.server.tokens()
        twice = {t for t in arrived if arrived.count(t) > 1}
        ids = {c.message["Message-ID"] for t in twice for c in self.server.by_token(t)}
        assert ids <= set(named.values()), f"sent twice without being named: {ids}"

    def test_runmailer_waits_for_the_database_and_records_everything(self) -> None:
        tokens = queue_many(600)
        worker = processes.start(
            ["runmailer", "--concurrency", "4"], self.server.port, **child_settings()
        )
        try:
            processes.wait_until(lambda: len(self.server.received) >= 30, timeout=60)
            with processes.queue_locked() as locked_at:
                time.sleep(GIVE_UP + 1)  # longer than send_mail would wait
                sent = self.sent_after(locked_at)
                assert worker.poll() is None, "runmailer must keep running"
            processes.wait_until(lambda: len(set(self.server.tokens())) >= len(tokens), 60)
            processes.wait_until(lambda: not Message.objects.exists(), timeout=30)
        finally:
            code, _, err = processes.stop(worker)
        assert code == 0, err[-2000:]
        assert len(sent) <= EXPOSED_LIMIT, f"{len(sent)} sent after recording stopped"
        self.assert_each_delivered_once(tokens)
        assert MessageLog.objects.count() == len(tokens), "every result recorded, once"
        assert err.count("the database is unreachable") == 1, err[-3000:]
        assert err.count("the database is back") == 1, err[-3000:]


@pytest.mark.server_database
class TestConnectionsCut(MailAssertions):
    """The server cuts the connections (a restart, a failover): the worker reconnects."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp
        self.server.faults.data_delay = 0.005

    def test_send_mail_reconnects_and_loses_and_repeats_nothing(self) -> None:
        tokens = queue_many(300)
        child = processes.start(["send_mail"], self.server.port, **child_settings())
        try:
            for at_least in (40, 100, 160):
                processes.wait_until(lambda n=at_least: len(self.server.received) >= n, 60)
                processes.cut_database_connections()
            code, _, err = processes.wait(child, timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        assert code == 0, err[-2000:]
        self.assert_each_delivered_once(tokens)
        self.assert_queue_empty()
        assert MessageLog.objects.count() == len(tokens)


@pytest.mark.tasks
class TestTasksDrainWhenTheDatabaseStopsAnswering(MailAssertions):
    """A Django Tasks drain gives up as send_mail does: the task fails, naming the count."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, settings: Any) -> None:
        self.server = smtp
        self.server.faults.data_delay = 0.02  # long enough for the lock to fall mid-drain
        settings.MAILER_RECORD_TIMEOUT = GIVE_UP

    def test_the_drain_stops_sending_and_fails_with_the_count(self) -> None:
        from mailer.tasks import send_queued_mail

        tokens = queue_many(600)
        locked = threading.Event()
        release = threading.Event()
        moment: list[float] = []

        def lock_mid_drain() -> None:
            processes.wait_until(lambda: len(self.server.received) >= 30, timeout=60)
            with processes.queue_locked() as locked_at:
                moment.append(locked_at)
                locked.set()
                release.wait(timeout=60)

        locker = threading.Thread(target=lock_mid_drain)
        locker.start()
        try:
            with pytest.raises(DatabaseUnreachable, match="could not be recorded") as raised:
                send_queued_mail.call()
            took = time.monotonic() - moment[0]
            with self.server.lock:
                sent = [r for r in self.server.received if r.data_at > moment[0]]
        finally:
            release.set()
            locker.join()
        assert locked.is_set()
        assert took < GIVE_UP + 10, f"gave up after {took:.1f} s"
        assert len(sent) <= EXPOSED_LIMIT, f"{len(sent)} sent after recording stopped"
        assert len(raised.value.unrecorded) <= EXPOSED_LIMIT
        # The database is back. This process lives on (a Tasks worker): what the drain had
        # claimed comes back when the lease it no longer renews runs out. As if it had:
        Message.objects.claimed().update(lease_expires_at=timezone.now())
        self.server.faults.data_delay = 0  # the rest at full speed: it only has to arrive
        send_queued_mail.call()
        self.assert_each_delivered(tokens)
        self.assert_queue_empty()

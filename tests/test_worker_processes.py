"""``runmailer`` spreading its connections over worker processes (mailer.runner.processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from mailer.models import Message, MessageLog
from mailer.models import Worker as WorkerRow
from mailer.runner.processes import CONNECTIONS_PER_PROCESS, processes_for, shares

from . import processes
from .assertions import MailAssertions
from .samples import batch, token_of

pytestmark = pytest.mark.django_db(transaction=True)


def queue_many(count: int) -> list[str]:
    messages = batch(count)
    Message.objects.enqueue(messages)
    return [token_of(m) for m in messages]


def worker_pids() -> set[int]:
    return set(WorkerRow.objects.values_list("pid", flat=True))


class TestHowConnectionsAreSpread:
    def test_one_process_per_eight_connections_at_most_one_per_cpu(self) -> None:
        if connection.vendor == "sqlite":  # one process on SQLite, whatever the count
            assert processes_for(64, cpus=4) == 1
            return
        assert CONNECTIONS_PER_PROCESS == 8
        assert processes_for(1, cpus=4) == 1
        assert processes_for(8, cpus=4) == 1
        assert processes_for(9, cpus=4) == 2
        assert processes_for(16, cpus=2) == 2
        assert processes_for(64, cpus=4) == 4
        assert processes_for(64, cpus=1) == 1

    def test_none_is_forked_while_another_thread_runs(self) -> None:
        # A child would inherit the locks that thread holds, never to be released.
        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        thread.start()
        try:
            with pytest.raises(CommandError, match="no other thread running"):
                call_command("runmailer", "--processes", "2", "--exit-when-idle")
        finally:
            release.set()
            thread.join()
        assert not WorkerRow.objects.exists()

    def test_shares_are_as_even_as_can_be(self) -> None:
        assert shares(16, 2) == [8, 8]
        assert shares(5, 2) == [3, 2]
        assert shares(10, 3) == [4, 3, 3]
        assert shares(2, 4) == [1, 1]  # never a process without a connection
        assert shares(3, 1) == [3]


@pytest.mark.slow
class TestWorkerProcesses(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> Iterator[None]:
        self.server = smtp
        self.sessions: list[int] = []
        yield
        for session in self.sessions:  # whatever a failing test left running
            for line in processes.session_processes(session):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)

    def start(self, *args: str) -> processes.Child:
        child = processes.spawn(
            [sys.executable, "-m", "django", "runmailer", "-v", "2", *args],
            processes.command_env(self.server.port),
            new_session=True,
        )
        self.sessions.append(child.pid)
        return child

    def test_each_process_is_a_worker_with_its_share_and_sigterm_stops_them_all(self) -> None:
        self.server.faults.data_delay = 0.02
        tokens = queue_many(300)
        parent = self.start("--concurrency", "4", "--processes", "2")
        processes.wait_until(lambda: len(worker_pids()) == 2, timeout=30)
        pids = worker_pids()
        assert parent.pid not in pids, "the parent delivers nothing itself"
        assert set(WorkerRow.objects.values_list("concurrency", flat=True)) == {2}
        processes.wait_until(lambda: len(self.server.received) >= 30, timeout=30)
        code, _, err = processes.stop(parent, signal.SIGTERM)
        assert code == 0, err
        assert err.count("starting with 2 connection(s)") == 2, err
        assert processes.session_processes(parent.pid) == []
        assert not WorkerRow.objects.exists()
        assert not Message.objects.claimed().exists(), "claims must be released on exit"
        arrived = self.server.tokens()
        assert len(arrived) == len(set(arrived)), "nothing may be delivered twice"
        assert MessageLog.objects.count() == len(arrived)
        assert Message.objects.count() == len([t for t in tokens if t not in set(arrived)])

    def test_sigterm_to_the_whole_process_group_stops_every_process(self) -> None:
        # As systemd stops a service, or a terminal's Ctrl-C: each worker process gets the
        # signal twice, from the group and passed on by the parent.
        self.server.faults.data_delay = 0.02
        queue_many(300)
        parent = self.start("--concurrency", "4", "--processes", "2")
        processes.wait_until(lambda: len(worker_pids()) == 2, timeout=30)
        processes.wait_until(lambda: len(self.server.received) >= 20, timeout=30)
        os.killpg(parent.pid, signal.SIGTERM)
        code, _, err = processes.wait(parent, timeout=60)
        assert code == 0, err
        processes.wait_until(lambda: not processes.session_processes(parent.pid), timeout=30)
        assert not WorkerRow.objects.exists()
        assert not Message.objects.claimed().exists()
        arrived = self.server.tokens()
        assert len(arrived) == len(set(arrived)), "nothing may be delivered twice"

    def test_exit_when_idle_adds_up_what_every_process_did(self) -> None:
        tokens = queue_many(60)
        parent = self.start("--concurrency", "4", "--processes", "2", "--exit-when-idle")
        code, out, err = processes.wait(parent, timeout=120)
        assert code == 0, err
        assert "sent 60, deferred 0, failed 0" in out
        assert err.count("starting with 2 connection(s)") == 2, err
        self.assert_each_delivered_once(tokens)
        self.assert_queue_empty()

    def test_by_default_sixteen_connections_take_two_processes_beside_sqlite(self) -> None:
        tokens = queue_many(40)
        parent = self.start("--concurrency", "16", "--exit-when-idle")
        code, out, err = processes.wait(parent, timeout=120)
        assert code == 0, err
        assert "sent 40, deferred 0, failed 0" in out
        if connection.vendor == "sqlite" or (os.cpu_count() or 1) < 2:
            assert err.count("starting with 16 connection(s)") == 1, err
        else:
            assert err.count("starting with 8 connection(s)") == 2, err
        self.assert_each_delivered_once(tokens)

    def test_a_process_that_dies_stops_the_others_and_the_command_fails(self) -> None:
        self.server.faults.data_delay = 0.02
        tokens = queue_many(300)
        parent = self.start("--concurrency", "4", "--processes", "2")
        processes.wait_until(lambda: len(worker_pids()) == 2, timeout=30)
        processes.wait_until(lambda: len(self.server.received) >= 20, timeout=30)
        victim, survivor = sorted(worker_pids())
        os.kill(victim, signal.SIGKILL)
        code, _, err = processes.wait(parent, timeout=60)
        assert code == 1
        assert f"worker process {victim} was killed by SIGKILL" in err
        assert processes.session_processes(parent.pid) == []
        assert survivor not in worker_pids(), "the survivor stopped, and said so"
        # The next worker on the host takes the dead one's claims back at once.
        done = processes.run(["send_mail"], self.server.port, timeout=120)
        assert done.returncode == 0, done.stderr
        self.assert_each_delivered(tokens)
        self.assert_queue_empty()

    def test_a_parent_killed_outright_leaves_no_worker_behind(self) -> None:
        self.server.faults.data_delay = 0.02
        queue_many(300)
        parent = self.start("--concurrency", "4", "--processes", "2")
        processes.wait_until(lambda: len(worker_pids()) == 2, timeout=30)
        processes.stop(parent, signal.SIGKILL)
        # Each child sees its parent gone and stops as on SIGTERM: unregistered, claims
        # given back.
        processes.wait_until(lambda: not processes.session_processes(parent.pid), timeout=30)
        assert not WorkerRow.objects.exists()
        assert not Message.objects.claimed().exists()
        arrived = self.server.tokens()
        assert len(arrived) == len(set(arrived)), "nothing may be delivered twice"

"""A process that queues one message with an idempotency key when a file barrier opens.

Run in a real process by the tests (``tests/processes.py``)::

    python -m django shell -c "from tests.racing import main; main()"

Its environment says where the barrier is (``RACE_DIR``), who it is
(``RACE_NAME``) and the key (``RACE_KEY``). It connects to the database, says
``ready-<name>``, waits for ``go``, says ``calling-<name>`` and queues the
message; with ``RACE_HOLD=1`` it does that in a transaction of its own, says
``called-<name>`` once the call returned, and then waits for ``end-<name>``,
whose content, ``commit`` or ``rollback``, ends the transaction. It prints
``queued=<count> end=<commit|rollback>``, and logs the queue's lines to
standard error.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from django.db import connection, transaction

import mailer

from . import processes

# Longest wait for the test to open a barrier.
WAIT = 120.0


class RolledBack(Exception):
    """Raised to roll back the transaction the test told this process to roll back."""


def wait_for(path: Path) -> str:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {WAIT} s")
        time.sleep(0.002)
    return path.read_text()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    where = Path(os.environ["RACE_DIR"])
    name = os.environ["RACE_NAME"]
    key = os.environ["RACE_KEY"]
    hold = os.environ.get("RACE_HOLD") == "1"
    connection.ensure_connection()
    (where / f"ready-{name}").touch()
    wait_for(where / "go")
    (where / f"calling-{name}").touch()
    subject = f"Race {key} {name}"
    end = "commit"
    if not hold:
        queued = mailer.send_mail(subject, "Body", None, ["to@example.com"], idempotency_key=key)
    else:
        try:
            with transaction.atomic():
                queued = mailer.send_mail(
                    subject, "Body", None, ["to@example.com"], idempotency_key=key
                )
                (where / f"called-{name}").write_text(str(queued))
                end = wait_for(where / f"end-{name}")
                if end == "rollback":
                    raise RolledBack
        except RolledBack:
            pass
    print(f"queued={queued} end={end}", flush=True)


# -- The test's side ----------------------------------------------------------------------


class Race:
    """Racing processes started by a test, and the files that steer them."""

    def __init__(self, where: Path, smtp_port: int) -> None:
        self.where = where
        self.smtp_port = smtp_port
        self.children: dict[str, processes.Child] = {}

    def start(self, name: str, key: str, *, hold: bool = False) -> None:
        self.children[name] = processes.start(
            ["shell", "-c", "from tests.racing import main; main()"],
            self.smtp_port,
            RACE_DIR=str(self.where),
            RACE_NAME=name,
            RACE_KEY=key,
            RACE_HOLD="1" if hold else "0",
        )

    def said(self, word: str) -> list[str]:
        """The names of the processes that said ``word`` (ready, calling, called)."""
        return sorted(p.name.split("-", 1)[1] for p in self.where.glob(f"{word}-*"))

    def when_ready_go(self) -> None:
        """Wait until every process is connected and waiting, then let them all go at once."""
        processes.wait_until(lambda: len(self.said("ready")) == len(self.children), timeout=180)
        (self.where / "go").touch()

    def end(self, name: str, how: str) -> None:
        """Commit or roll back the transaction that process ``name`` holds."""
        written = self.where / f".end-{name}"
        written.write_text(how)
        written.rename(self.where / f"end-{name}")  # appears whole: the process reads it at once

    def results(self) -> dict[str, tuple[int, str, str]]:
        """Wait for every process; (queued, how it ended, stderr) of each."""
        found = {}
        for name, child in self.children.items():
            code, out, err = processes.wait(child, timeout=180)
            assert code == 0, f"{name} exited with {code}:\n{err[-3000:]}"
            match = re.search(r"queued=(\d+) end=(\w+)", out)
            assert match, f"{name} printed {out!r}:\n{err[-3000:]}"
            found[name] = (int(match.group(1)), match.group(2), err)
        return found

    def stop_all(self) -> None:
        """Kill what is still running (a failed test must not leave processes behind)."""
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
            if not child.stdout_file.closed:
                child.output()


def lock_waiters() -> int:
    """Sessions of the test database that wait for a key another transaction holds.

    PostgreSQL says so in ``pg_stat_activity``. MariaDB's lock tables
    (``INNODB_TRX``) are a snapshot refreshed only when nobody read them for
    0.1 s, so it counts statements on the key table that have run for a
    second or more instead: claiming a key takes milliseconds, unless it waits.
    (SQLite's writers wait in their own process, unseen.)
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT COUNT(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        else:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE DB = DATABASE() AND COMMAND = 'Query' AND TIME >= 1 AND INFO LIKE %s",
                ["%mailer_idempotencykey%"],
            )
        row = cursor.fetchone()
    return int(row[0])

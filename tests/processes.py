"""Starting ``manage.py`` commands in real worker processes against the test database,
and making that database misbehave for them."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def command_env(smtp_port: int, **extra: str) -> dict[str, str]:
    """Environment for a child process: same database (the test one), same SMTP server."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "MAILER_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "MAILER_TEST_SMTP_PORT": str(smtp_port),
            "MAILER_TEST_LOCK_PATH": str(settings.MAILER_LOCK_PATH),
            "MAILER_TEST_STYLE": settings.STYLE,
            # SIGABRT then prints every thread's stack: what a hung child was doing.
            "PYTHONFAULTHANDLER": "1",
        }
    )
    env.update(extra)
    return env


class Child(subprocess.Popen[str]):
    """A background process whose output goes to files, so it can never block on a full pipe."""

    def output(self) -> tuple[str, str]:
        streams = []
        for stream in (self.stdout_file, self.stderr_file):
            stream.seek(0)
            streams.append(stream.read())
            stream.close()
        return streams[0], streams[1]

    def printed(self) -> str:
        """What it has written to stdout so far, read while it runs (the shared offset stays)."""
        fd = self.stdout_file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def start(command: list[str], smtp_port: int, **extra: str) -> Child:
    """Start ``python -m django <command>`` in the background."""
    return spawn([sys.executable, "-m", "django", *command], command_env(smtp_port, **extra))


def workers_until_idle(
    count: int, smtp_port: int, timeout: float = 120, **extra: str
) -> list[tuple[int, str, str]]:
    """Run ``count`` ``runmailer --exit-when-idle`` side by side until each exits;
    their (exit code, stdout, stderr)."""
    procs = [start(["runmailer", "--exit-when-idle"], smtp_port, **extra) for _ in range(count)]
    return [wait(proc, timeout) for proc in procs]


def spawn(argv: list[str], env: dict[str, str], new_session: bool = False) -> Child:
    """Start ``argv`` in the checkout, in the background (in a session of its own if asked)."""
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by Child.output)
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    child = Child(
        argv,
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=err,
        text=True,
        start_new_session=new_session,
    )
    child.stdout_file, child.stderr_file = out, err
    _started.append(child)
    return child


# Every child started through ``spawn``, so that none outlives the test that started it.
_started: list[Child] = []


def kill_leftovers() -> list[str]:
    """Kill the children started so far that are still running; say which they were.

    A test stops what it starts; this catches what a failing test could not stop, so a
    worker left running never delivers into a later test.
    """
    left = []
    while _started:
        child = _started.pop()
        if child.poll() is None:
            left.append(" ".join(str(a) for a in child.args[-3:]))  # type: ignore[index]
            child.kill()
            child.wait()
    return left


def session_processes(session: int) -> list[str]:
    """The live processes of a session (by its leader's pid), as "pid command" lines.

    A process started with ``new_session=True`` leads one; whatever it starts stays in it
    unless it leaves on purpose, even once its parent is gone.
    """
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        command, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1]
        state, _parent, _group, sid = fields.split()[:4]
        if int(sid) == session and state != "Z":
            found.append(f"{stat.parent.name} {command}")
    return found


def run(
    command: list[str], smtp_port: int, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m django <command>`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "django", *command],
        env=command_env(smtp_port, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stop(process: Child, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
    """Send ``sig``, wait for exit; return (exit code, stdout, stderr)."""
    if process.poll() is None:
        process.send_signal(sig)
    return wait(process, timeout, f"of signal {sig}")


def wait(process: Child, timeout: float = 120, after: str = "") -> tuple[int, str, str]:
    """Wait for ``process`` to exit; return (exit code, stdout, stderr)."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _, err = process.output()
        raise AssertionError(
            f"process did not exit within {timeout}s {after}:\n{err[-8000:]}"
        ) from None
    out, err = process.output()
    return process.returncode, out, err


def wait_until(condition: object, timeout: float = 30, interval: float = 0.05) -> None:
    """Poll ``condition()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
uid = int(sys.argv[2])
if uid != os.geteuid():
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print(os.getpid(), os.geteuid(), flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding_lock(path: str, uid: int | None = None) -> Iterator[int]:
    """A separate process holds ``flock`` on ``path`` (running as ``uid``); yields its pid.

    The file is opened (created if missing) before the process changes its user, as a
    descriptor inherited from root would be; only root can switch to another ``uid``.
    """
    uid = os.geteuid() if uid is None else uid
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, path, str(uid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()  # written once the lock is held
        assert line, f"the lock holder did not start: {child.stderr.read() if child.stderr else ''}"
        assert int(line[1]) == uid, f"the lock holder runs as {line[1]}, not {uid}"
        yield child.pid
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def unused_uid() -> int:
    """A user id no account has (only root can give a file or a process to it)."""
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def another_users_directory(tmp_path: Path) -> Path:
    """A directory that belongs to someone else: made and given away as root, else /usr."""
    if os.geteuid() != 0:
        usr = Path("/usr")
        assert usr.stat().st_uid != os.geteuid()  # a system directory, root's
        return usr
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    os.chown(directory, unused_uid(), -1)
    return directory


_MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(done.returncode)
"""


def run_measured(
    command: list[str], smtp_port: int, timeout: float = 120, **extra: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``python -m django <command>``; return it and its peak resident memory in bytes.

    A fresh interpreter starts it and reads ``RUSAGE_CHILDREN`` (Linux reports KiB), so
    no other process of the test run counts.
    """
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, sys.executable, "-m", "django", *command],
        env=command_env(smtp_port, **extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    *errors, peak = done.stderr.rstrip("\n").split("\n")
    done.stderr = "\n".join(errors)
    return done, int(peak) * 1024


def settings_env(**values: Any) -> dict[str, str]:
    """Environment giving a child process ``MAILER_<NAME>`` settings (names lower-case)."""
    return {
        "MAILER_TEST_SETTINGS": json.dumps({f"MAILER_{k.upper()}": v for k, v in values.items()})
    }


def cut_database_connections() -> int:
    """Cut every other connection to the test database, as a restarted server would
    (PostgreSQL and MariaDB); return how many."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return len(cursor.fetchall())
        cursor.execute(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        ids = [row[0] for row in cursor.fetchall()]
        for pid in ids:
            cursor.execute(f"KILL CONNECTION {int(pid)}")
        return len(ids)


# Run by ``manage.py shell -c`` in a process of its own: lock the queue's table against
# every other connection (SQLite: take the database's write lock), say so, and hold it
# until stdin closes.
_LOCKER = """
import sys
from django.db import connection
cursor = connection.cursor()
if connection.vendor == "sqlite":
    cursor.execute("BEGIN IMMEDIATE")
elif connection.vendor == "postgresql":
    cursor.execute("BEGIN")
    cursor.execute("LOCK TABLE mailer_message IN ACCESS EXCLUSIVE MODE")
else:
    cursor.execute("LOCK TABLES mailer_message WRITE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def queue_locked(timeout: float = 60) -> Iterator[float]:
    """The database stops answering for the queue: another process holds a lock on
    it for the duration of the block, which is given when it was taken
    (``time.monotonic()``). Only that process's connection works on the table."""
    locker = subprocess.Popen(
        [sys.executable, "-m", "django", "shell", "-c", _LOCKER],
        env=command_env(0),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        assert locker.stdout is not None
        for line in locker.stdout:
            if line.strip() == "locked" or time.monotonic() > deadline:
                break
        assert locker.poll() is None, f"the locker died: {locker.communicate()[1][-2000:]}"
        yield time.monotonic()
    finally:
        if locker.stdin is not None:
            locker.stdin.close()
        try:
            locker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            locker.kill()
            locker.wait()
        for stream in (locker.stdout, locker.stderr):
            if stream is not None:
                stream.close()

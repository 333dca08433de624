"""Starting ``manage.py`` commands in real worker processes against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    return child


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
        process.kill()
        process.wait()
        _, err = process.output()
        raise AssertionError(
            f"process did not exit within {timeout}s {after}:\n{err[-3000:]}"
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

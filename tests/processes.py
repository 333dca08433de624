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


def start(command: list[str], smtp_port: int, **extra: str) -> Child:
    """Start ``python -m django <command>`` in the background."""
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by Child.output)
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115
    child = Child(
        [sys.executable, "-m", "django", *command],
        env=command_env(smtp_port, **extra),
        cwd=ROOT,
        stdout=out,
        stderr=err,
        text=True,
    )
    child.stdout_file, child.stderr_file = out, err
    return child


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

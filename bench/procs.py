"""The benchmark's sides and child processes: which package runs where, and how.

A side is one package on one Django version, in its own virtualenv under
bench/.venvs/ (made by bench/venvs.sh). ``Env`` is a side on one database,
``Proc`` a management command run in it (its wall time, CPU time and peak
memory read when it is reaped), ``Driver`` a long-lived bench/driver.py in it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"


@dataclass(frozen=True)
class Side:
    venv: str
    package: str  # ours | dm | po: what bench/benchsettings.py and bench/driver.py set up
    django: str  # "5.2" | "6.1"
    label: str
    # Only in the drain scenario: ours on Django 5.2 on the Python of the Django 6.1 sides,
    # so that "6.1 / 5.2" can be compared on one interpreter (see SAME_PYTHON).
    drain_only: bool = False


def venv_python_version(venv: str) -> str | None:
    """The Python version a virtualenv under bench/.venvs/ was made with ("3.13.0")."""
    try:
        config = (VENVS / venv / "pyvenv.cfg").read_text()
    except OSError:
        return None
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "version":
            return value.strip()
    return None


def same_python_venv(version: str | None) -> str | None:
    """bench/venvs.sh's name for ours on Django 5.2 on that Python: ours-dj52py313."""
    if not version:
        return None
    major, minor = version.split(".")[:2]
    return f"ours-dj52py{major}{minor}"


PACKAGE_NAMES = {"ours": "mailer", "dm": "django-mailer 2.3.2", "po": "django-post-office 3.12"}
# Ours on Django 5.2 and the Django 6.1 sides' Python (bench/venvs.sh makes its virtualenv
# with theirs): Django 6.1 / 5.2 with the interpreter held equal.
SAME_PYTHON = "ours52py"


def make_sides(dj61_python: str | None) -> dict[str, Side]:
    """In table order: the columns of bench/RESULTS.md and the A B C ... order of every trial;
    the same-Python side (when its Python is known) right before ours on Django 6.1, so that
    the two run back to back."""
    sides = [
        (
            f"{package}{suffix}",
            Side(f"{package}-dj{tag}", package, django, f"{name} (Django {django})"),
        )
        for suffix, tag, django in (("", "52", "5.2"), ("61", "61", "6.1"))
        for package, name in PACKAGE_NAMES.items()
    ]
    venv = same_python_venv(dj61_python)
    if venv and dj61_python:
        python = ".".join(dj61_python.split(".")[:2])
        label = f"mailer (Django 5.2, Python {python})"
        sides.insert(3, (SAME_PYTHON, Side(venv, "ours", "5.2", label, drain_only=True)))
    return dict(sides)


SIDES = make_sides(venv_python_version("ours-dj61"))
# Which packages run on which database: the others are compared on SQLite and PostgreSQL.
DB_PACKAGES = {
    "sqlite": ("ours", "dm", "po"),
    "postgres": ("ours", "dm", "po"),
    "mariadb": ("ours",),
}


def side_name(package: str, django: str) -> str:
    return package if django == "5.2" else f"{package}61"


class BenchFailure(Exception):
    """A trial went wrong: a message lost or duplicated, a process failed."""


# -- processes ---------------------------------------------------------------------


class Env:
    """Where one side runs: its virtualenv and its database."""

    def __init__(self, side: str, db: str, tmp: Path, smtp_port: int, control: int) -> None:
        spec = SIDES[side]
        self.side, self.db, self.label, self.package = side, db, spec.label, spec.package
        self.python = str(VENVS / spec.venv / "bin" / "python")
        self.env = dict(os.environ)
        self.env.update(
            {
                "BENCH_SIDE": spec.package,
                "BENCH_DB": db,
                "BENCH_DB_NAME": f"bench_{side}_{os.getpid()}",
                "BENCH_TMP": str(tmp),
                "BENCH_SMTP_PORT": str(smtp_port),
                "BENCH_CONTROL_PORT": str(control),
                "PYTHONPATH": str(BENCH),
                "DJANGO_SETTINGS_MODULE": "benchsettings",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        self.env.pop("BENCH_EXTRA", None)

    def command(self, *args: str, extra: dict[str, Any] | None = None) -> Proc:
        env = dict(self.env)
        if extra:
            env["BENCH_EXTRA"] = json.dumps(extra)
        return Proc([self.python, str(BENCH / "manage.py"), *args], env)


class Proc:
    """A child process whose peak memory (max RSS) and CPU time are read when it is reaped."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait)
        self.started = time.perf_counter()
        self.started_clock = time.monotonic()  # the sink's clock, for "start to last accept"
        self.popen = subprocess.Popen(
            argv, env=env, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=self.err
        )
        self.seconds: float | None = None
        self.maxrss_mb: float | None = None
        self.cpu: float | None = None  # user + system seconds, with the children it reaped
        self.returncode: int | None = None

    def wait(self, timeout: float = 1800) -> Proc:
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.popen.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.popen.kill()
                pid, status, usage = os.wait4(self.popen.pid, 0)
                raise BenchFailure(f"{self.argv[2:]} did not finish in {timeout} s")
            time.sleep(0.002)
        self.seconds = time.perf_counter() - self.started
        self.maxrss_mb = usage.ru_maxrss / 1024
        self.cpu = usage.ru_utime + usage.ru_stime
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode
        self.err.seek(0)
        self.stderr = self.err.read().decode(errors="replace")
        self.err.close()
        return self

    def check(self) -> Proc:
        if self.returncode not in (0, -signal.SIGTERM):
            raise BenchFailure(
                f"{' '.join(self.argv[2:])} exited {self.returncode}:\n{self.stderr[-2000:]}"
            )
        return self

    def stop(self) -> Proc:
        if self.popen.poll() is None and self.returncode is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(60)


class Driver:
    """A long-lived bench/driver.py in one virtualenv, spoken to in JSON lines."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.popen = subprocess.Popen(
            [env.python, str(BENCH / "driver.py")],
            env=env.env,
            cwd=BENCH,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._read()

    def _read(self) -> Any:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise BenchFailure(f"the {self.env.side}/{self.env.db} driver died")
        return json.loads(line)

    def __call__(self, cmd: str, **args: Any) -> Any:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.popen.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise BenchFailure(
                f"{self.env.side}/{self.env.db} {cmd}: {answer['error']}\n{answer['trace']}"
            )
        return answer["ok"]

    def close(self) -> None:
        if self.popen.stdin:
            self.popen.stdin.close()
        self.popen.wait(30)

"""The benchmark's orchestrator: this package against django-mailer 2.3.2, in one run.

Run it through ``bash bench/run.sh [--quick|--full|--check]``, which makes the
virtualenvs first. Standard library only: the measured code runs in child
processes (``bench/driver.py`` and ``bench/manage.py``), one virtualenv per
package, against one SMTP sink process (``bench/sink.py``) and the same
database servers. Trials alternate between the packages (A B A B ...), every
delivered message is checked by its token to have arrived exactly once, and
the medians with min-max go to a table and to ``bench/out/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinkclient import Sink

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"

# Sizes per mode. "reps" are the A/B repetitions of cheap trials, "slow_reps" of costly ones.
MODES: dict[str, dict[str, Any]] = {
    "check": {
        "reps": 1,
        "slow_reps": 1,
        "enqueue_each": 10,
        "enqueue_mass": 40,
        "drain": 40,
        "command": 20,
        "cron_reps": 1,
        "lat_base": 4,
        "wake_samples": 2,
        "scale": [60],
        "scale_sample": 20,
        "scale_pg_extra": [],
        "memory_ours": [30],
        "memory_dm": [30],
        "attach": [5],
        "dbs": ["sqlite", "postgres", "mariadb"],
        "dj61": False,
    },
    "quick": {
        "reps": 3,
        "slow_reps": 2,
        "enqueue_each": 200,
        "enqueue_mass": 2000,
        "drain": 2000,
        "command": 2000,
        "cron_reps": 3,
        "lat_base": 40,
        "wake_samples": 10,
        "scale": [1000, 10000],
        "scale_sample": 500,
        "scale_pg_extra": [],
        "memory_ours": [2000, 20000],
        "memory_dm": [2000],
        "attach": [2000],
        "dbs": ["sqlite", "postgres", "mariadb"],
        "dj61": False,
    },
    "full": {
        "reps": 3,
        "slow_reps": 2,
        "enqueue_each": 500,
        "enqueue_mass": 5000,
        "drain": 5000,
        "command": 5000,
        "cron_reps": 5,
        "lat_base": 250,
        "wake_samples": 30,
        "scale": [1000, 10000, 100000],
        "scale_sample": 1000,
        "scale_pg_extra": [1000000],
        "memory_ours": [10000, 100000],
        "memory_dm": [10000],
        "attach": [2000, 20000],
        "dbs": ["sqlite", "postgres", "mariadb"],
        "dj61": True,
    },
}

SIDES = {
    "ours": ("ours-dj52", "ours", "mailer (Django 5.2)"),
    "dm": ("dm-dj52", "dm", "django-mailer 2.3.2 (Django 5.2)"),
    "ours61": ("ours-dj61", "ours", "mailer (Django 6.1)"),
}
# Which sides run on which database: django-mailer is compared on SQLite and PostgreSQL.
DB_SIDES = {"sqlite": ["ours", "dm"], "postgres": ["ours", "dm"], "mariadb": ["ours"]}


class BenchFailure(Exception):
    """A trial went wrong: a message lost or duplicated, a process failed."""


# -- processes ---------------------------------------------------------------------


class Env:
    """Where one side runs: its virtualenv and its database."""

    def __init__(self, side: str, db: str, tmp: Path, smtp_port: int, control: int) -> None:
        venv, package, label = SIDES[side]
        self.side, self.db, self.label, self.package = side, db, label, package
        self.python = str(VENVS / venv / "bin" / "python")
        self.env = dict(os.environ)
        self.env.update(
            {
                "BENCH_SIDE": package,
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
    """A child process whose peak memory (max RSS) is read when it is reaped."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait)
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            argv, env=env, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=self.err
        )
        self.seconds: float | None = None
        self.maxrss_mb: float | None = None
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


# -- results -----------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    db: str
    unit: str
    better: str  # "higher" or "lower"
    samples: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    def add(self, side: str, value: float) -> None:
        self.samples.setdefault(side, []).append(value)

    def median(self, side: str) -> float | None:
        values = self.samples.get(side)
        return statistics.median(values) if values else None


class Results:
    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], Metric] = {}
        self.failures: list[str] = []
        self.verified = 0

    def metric(self, name: str, db: str, unit: str, better: str, note: str = "") -> Metric:
        key = (name, db)
        if key not in self.metrics:
            self.metrics[key] = Metric(name, db, unit, better, note=note)
        return self.metrics[key]

    def add(self, name: str, db: str, unit: str, better: str, side: str, value: float) -> None:
        self.metric(name, db, unit, better).add(side, value)

    def get(self, name: str, db: str) -> Metric | None:
        return self.metrics.get((name, db))


# -- the benchmark -----------------------------------------------------------------


class Bench:
    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        self.mode = mode
        self.size = dict(MODES[mode])
        self.args = args
        if args.db:
            self.size["dbs"] = [d for d in self.size["dbs"] if d in args.db]
        if args.dj61 is not None:
            self.size["dj61"] = args.dj61
        self.only = set(args.only or [])
        self.results = Results()
        self.tmp = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
        self.run_id = time.strftime("%H%M%S")
        self.counter = 0
        self.drivers: dict[tuple[str, str], Driver] = {}
        self.info: dict[str, Any] = {}

    # -- plumbing --

    def prefix(self) -> str:
        self.counter += 1
        return f"r{self.run_id}n{self.counter}"

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def wanted(self, scenario: str) -> bool:
        return not self.only or scenario in self.only

    def start_sink(self) -> None:
        self.sink_proc = subprocess.Popen(
            [sys.executable, str(BENCH / "sink.py")], stdout=subprocess.PIPE, text=True
        )
        assert self.sink_proc.stdout is not None
        ports = json.loads(self.sink_proc.stdout.readline())
        self.smtp_port, self.control_port = ports["smtp"], ports["control"]
        self.sink = Sink(self.control_port)

    def env(self, side: str, db: str) -> Env:
        return Env(side, db, self.tmp, self.smtp_port, self.control_port)

    def driver(self, side: str, db: str) -> Driver:
        key = (side, db)
        if key not in self.drivers:
            self.drivers[key] = Driver(self.env(side, db))
            version = self.drivers[key]("setup")["version"]
            self.info.setdefault("databases", {})[db] = version
        return self.drivers[key]

    def sides(self, db: str) -> list[str]:
        sides = list(DB_SIDES[db])
        if self.size["dj61"] and db in ("sqlite", "postgres"):
            sides.append("ours61")
        return sides

    def verify(self, what: str, prefix: str, n: int, count: int | None = None) -> None:
        result = self.sink.verify(f"tok-{prefix}", n, count)
        if not result["ok"]:
            message = f"{what}: messages not delivered exactly once: {result}"
            self.results.failures.append(message)
            self.log("FAIL " + message)
        else:
            self.results.verified += result["arrived"]

    def delivered(self, what: str, prefix: str, n: int, timeout: float = 10) -> dict[str, Any]:
        """Wait until the sink has n messages, then verify them; return the sink's stats."""
        stats = self.sink.wait(n, timeout=timeout)
        self.verify(what, prefix, n)
        return stats

    # -- scenarios --

    def scenario_enqueue(self, db: str) -> None:
        apis = [
            ("django_send_mail", "enqueue: django.core.mail.send_mail, one call per message"),
            ("mailer_send_mail", "enqueue: mailer.send_mail, one call per message"),
            ("send_mass_mail", "enqueue: django.core.mail.send_mass_mail of N"),
        ]
        for api, name in apis:
            n = self.size["enqueue_mass" if api == "send_mass_mail" else "enqueue_each"]
            for _rep in range(self.size["reps"]):
                for side in self.sides(db):
                    drive = self.driver(side, db)
                    drive("clear")
                    prefix = self.prefix()
                    got = drive("enqueue", api=api, n=n, prefix=prefix)
                    queued = drive("count")["queued"]
                    if queued != n:
                        self.results.failures.append(f"{name} {side}/{db}: {queued} queued of {n}")
                    self.results.add(
                        f"{name} (N={n})", db, "msg/s", "higher", side, n / got["seconds"]
                    )
                    if api == "send_mass_mail":
                        inserts = got["by_verb"].get("INSERT", 0)
                        self.results.add(
                            f"enqueue: send_mass_mail of N, INSERT statements (N={n})",
                            db,
                            "INSERTs",
                            "lower",
                            side,
                            inserts,
                        )
                    if self.mode == "check":  # deliver them too: every one exactly once
                        self.sink.reset()
                        drive("drain")
                        self.delivered(f"{name} {side}/{db}", prefix, n)
                    drive("clear")

    def fresh_queue(self, drive: Driver, n: int, **fill: Any) -> str:
        """Empty the queue and the sink, queue n messages with a new prefix; return it."""
        drive("clear")
        prefix = self.prefix()
        drive("fill", n=n, prefix=prefix, **fill)
        drive("analyze")
        self.sink.reset()
        return prefix

    def scenario_drain(self, db: str) -> None:
        n = self.size["drain"]
        name = f"drain: send_all() in process, zero-latency server (N={n})"
        for _rep in range(self.size["reps"]):
            for side in self.sides(db):
                drive = self.driver(side, db)
                prefix = self.fresh_queue(drive, n)
                got = drive("drain")
                stats = self.delivered(f"drain {side}/{db}", prefix, n)
                self.results.add(name, db, "msg/s", "higher", side, n / got["seconds"])
                self.results.add(
                    "drain: SQL statements per delivered message",
                    db,
                    "stmt/msg",
                    "lower",
                    side,
                    got["statements"] / n,
                )
                self.results.add(
                    "drain: transactions per delivered message",
                    db,
                    "txn/msg",
                    "lower",
                    side,
                    got["transactions"] / n,
                )
                self.results.add(
                    "drain: SMTP connections per run",
                    db,
                    "conn",
                    "lower",
                    side,
                    stats["connections"],
                )
                self.results.add(
                    "drain: SMTP connections per message",
                    db,
                    "conn/msg",
                    "lower",
                    side,
                    stats["connections"] / n,
                )
                drive("clear")

    def scenario_baselines(self) -> None:
        n = self.size["drain"]
        drive = self.driver("ours", "sqlite")
        for _rep in range(self.size["reps"]):
            for kind, label in (
                ("baseline_django", "Django's SMTP backend, one connection"),
                ("baseline_smtplib", "raw smtplib, one connection, pre-rendered"),
            ):
                prefix = self.prefix()
                self.sink.reset()
                got = drive(kind, n=n, prefix=prefix, port=self.smtp_port)
                stats = self.delivered(kind, prefix, n)
                self.results.add(
                    f"baseline: {label} (N={n})", "-", "msg/s", "higher", "ours", n / got["seconds"]
                )
                if stats["connections"] != 1:
                    self.results.failures.append(f"{kind}: {stats['connections']} connections")

    def scenario_command(self, db: str) -> None:
        n = self.size["command"]
        name = f"drain: manage.py send_mail, wall time incl. start-up (N={n})"
        for _rep in range(self.size["slow_reps"]):
            for side in self.sides(db):
                drive = self.driver(side, db)
                prefix = self.fresh_queue(drive, n)
                proc = self.env(side, db).command("send_mail").wait().check()
                self.delivered(f"send_mail {side}/{db}", prefix, n)
                self.results.add(name, db, "msg/s", "higher", side, n / proc.seconds)
                self.results.add(
                    f"drain: manage.py send_mail, peak RSS (N={n})",
                    db,
                    "MB",
                    "lower",
                    side,
                    proc.maxrss_mb,
                )
                drive("clear")

    def scenario_cron(self, db: str) -> None:
        name = "cron tick: manage.py send_mail on an empty queue"
        for side in self.sides(db):
            self.driver(side, db)("clear")
        for _rep in range(self.size["cron_reps"]):
            for side in self.sides(db):
                proc = self.env(side, db).command("send_mail").wait().check()
                self.results.add(name, db, "ms", "lower", side, proc.seconds * 1000)

    def scenario_latency(self, db: str) -> None:
        """The 50 ms server: runmailer at concurrency 1, 4, 16; 1 and 4 worker processes."""
        base = self.size["lat_base"]
        self.sink.latency(0.05)
        try:
            for _rep in range(self.size["slow_reps"]):
                for side in [s for s in self.sides(db) if s != "ours61"]:
                    drive = self.driver(side, db)
                    if SIDES[side][1] == "dm":
                        runs = [("manage.py send_mail", 1, base, ["send_mail"])]
                    else:
                        levels = (1, 16) if self.mode == "check" else (1, 4, 16)
                        runs = [
                            (f"runmailer --concurrency {c}", 1, base * c, _runmailer(c))
                            for c in levels
                        ] + [("4 x runmailer --concurrency 1", 4, base * 4, _runmailer(1))]
                    for label, processes, n, argv in runs:
                        prefix = self.fresh_queue(drive, n)
                        began = time.perf_counter()
                        procs = [self.env(side, db).command(*argv) for _ in range(processes)]
                        for proc in procs:
                            proc.wait().check()
                        wall = time.perf_counter() - began
                        stats = self.delivered(f"{label} {side}/{db}", prefix, n)
                        metric = f"50 ms server: {label}"
                        self.results.add(metric, db, "msg/s", "higher", side, n / wall)
                        if n > 1 and stats["last"] > stats["first"]:
                            self.results.add(
                                f"50 ms server: {label}, first to last accept",
                                db,
                                "msg/s",
                                "higher",
                                side,
                                (n - 1) / (stats["last"] - stats["first"]),
                            )
                        drive("clear")
        finally:
            self.sink.latency(0)

    def scenario_wakeup(self, db: str) -> None:
        """Seconds from commit to SMTP accept, one message at a time, with the worker idle."""
        samples = self.size["wake_samples"]
        per_rep = max(1, samples // self.size["slow_reps"])
        for rep in range(self.size["slow_reps"]):
            for side in [s for s in self.sides(db) if s != "ours61"]:
                command = "runmailer_pg" if db == "postgres" else "runmailer"
                drive = self.driver(side, db)
                drive("clear")
                extra = {
                    # The same polling ceiling for both (ours' default; django-mailer's is 30 s).
                    "MAILER_EMPTY_QUEUE_SLEEP": 0.25,
                    # django-mailer's worker dies holding its lock file when stopped: a lock of
                    # its own keeps that stale lock away from the other trials.
                    "MAILER_LOCK_PATH": str(self.tmp / f"wake-{side}-{db}-{rep}"),
                }
                worker = self.env(side, db).command(command, extra=extra)
                try:
                    warm = self.prefix()  # one message first: the worker is up and idle
                    self.sink.reset()
                    drive("wakeup", k=1, prefix=warm, control=self.control_port, gap=0.5)
                    self.sink.reset()
                    prefix = self.prefix()
                    got = drive(
                        "wakeup", k=per_rep, prefix=prefix, control=self.control_port, gap=0.2
                    )
                finally:
                    worker.stop()
                self.verify(f"wake-up {side}/{db}", prefix, per_rep)
                lost = [x for x in got["latencies"] if x is None]
                if lost:
                    self.results.failures.append(f"wake-up {side}/{db}: {len(lost)} not delivered")
                for value in got["latencies"]:
                    if value is not None:
                        self.results.add(
                            f"wake-up latency, idle {command} (median of samples)",
                            db,
                            "ms",
                            "lower",
                            side,
                            value * 1000,
                        )
                drive("clear")

    def scenario_scale(self, db: str) -> None:
        """Per-message cost of draining S messages from a queue holding N."""
        sizes = list(self.size["scale"])
        if db == "postgres":
            sizes += self.size["scale_pg_extra"]
        sample = self.size["scale_sample"]
        for n in sizes:
            sides = [s for s in self.sides(db) if s != "ours61"]
            if n > 100000:
                sides = [s for s in sides if SIDES[s][1] == "ours"]
            prefixes = {}
            for side in sides:
                drive = self.driver(side, db)
                drive("clear")
                prefixes[side] = self.prefix()
                self.log(f"  filling {n} for {side}/{db}")
                drive("fill", n=n, prefix=prefixes[side], chunk=2000)
                drive("analyze")
            for rep in range(self.size["reps"]):
                for side in sides:
                    drive = self.driver(side, db)
                    self.sink.reset()
                    got = drive("drain", max_batch=sample)
                    self.sink.wait(sample, timeout=60)
                    total = n + sample * self.size["reps"]
                    self.verify(f"scale {n} {side}/{db}", prefixes[side], total, count=sample)
                    self.results.add(
                        f"scale: drain {sample} of N={n:,} queued, cost per message",
                        db,
                        "µs/msg",
                        "lower",
                        side,
                        got["seconds"] / sample * 1e6,
                    )
                    self.results.add(
                        f"scale: drain {sample} of N={n:,} queued, SQL statements per message",
                        db,
                        "stmt/msg",
                        "lower",
                        side,
                        got["statements"] / sample,
                    )
                    # Keep the queue at N: queue as many as were sent, with new tokens.
                    drive("fill", n=sample, prefix=prefixes[side], start=n + rep * sample)
            for side in sides:
                self.driver(side, db)("clear")

    def scenario_memory(self, db: str) -> None:
        """Peak RSS of manage.py send_mail draining the whole queue (also with attachments)."""
        plans: list[tuple[str, int, int]] = []
        for n in self.size["memory_ours"]:
            plans.append(("ours", n, 0))
        for n in self.size["memory_dm"]:
            plans.append(("dm", n, 0))
        for n in self.size["attach"]:
            plans += [("ours", n, 100), ("dm", n, 100)]
        for n, kb in sorted({(n, kb) for _, n, kb in plans}):
            for side in ("ours", "dm"):
                if (side, n, kb) not in plans:
                    continue
                drive = self.driver(side, db)
                self.log(f"  memory: {side}/{db} {n} messages{' with 100 KB' if kb else ''}")
                prefix = self.fresh_queue(drive, n, attach_kb=kb)
                proc = self.env(side, db).command("send_mail").wait().check()
                self.delivered(f"memory {n} {side}/{db}", prefix, n)
                what = f"{n:,} messages" + (" with a 100 KB attachment" if kb else "")
                self.results.add(
                    f"memory: manage.py send_mail peak RSS, {what}",
                    db,
                    "MB",
                    "lower",
                    side,
                    proc.maxrss_mb,
                )
                self.results.add(
                    f"memory: manage.py send_mail wall time, {what}",
                    db,
                    "s",
                    "lower",
                    side,
                    proc.seconds,
                )
                drive("clear")

    # -- the run --

    def run(self) -> int:
        started = time.time()
        self.load_at_start = tuple(round(x, 2) for x in os.getloadavg())
        self.start_sink()
        dbs = self.size["dbs"]
        try:
            self.introduce(dbs)
            plan = [
                ("enqueue", self.scenario_enqueue, dbs),
                ("drain", self.scenario_drain, dbs),
                ("baselines", lambda _db: self.scenario_baselines(), ["-"]),
                ("command", self.scenario_command, dbs),
                ("cron", self.scenario_cron, dbs),
                ("latency", self.scenario_latency, [d for d in dbs if d == "postgres"]),
                ("wakeup", self.scenario_wakeup, dbs),
                ("scale", self.scenario_scale, [d for d in dbs if d != "mariadb"]),
                ("memory", self.scenario_memory, [d for d in dbs if d == "postgres"]),
            ]
            for scenario, function, where in plan:
                if not self.wanted(scenario):
                    continue
                for db in where:
                    self.log(f"{scenario} [{db}]")
                    try:
                        function(db)
                    except BenchFailure as error:
                        self.results.failures.append(f"{scenario} [{db}]: {error}")
                        self.log(f"FAIL {scenario} [{db}]: {error}")
        finally:
            self.shut_down()
        elapsed = time.time() - started
        return self.report(elapsed)

    def introduce(self, dbs: list[str]) -> None:
        """Start a driver for each side on each database; note the versions they run."""
        for db in dbs:
            for side in self.sides(db):
                hello = self.driver(side, db).hello
                self.info.setdefault("sides", {})[side] = {
                    k: hello[k] for k in ("python", "django", "package")
                }

    def shut_down(self) -> None:
        """Drop the drivers' databases, stop them and the sink, remove the temporary files."""
        for drive in self.drivers.values():
            try:
                drive("drop")
                drive.close()
            except Exception as error:  # keep tearing down
                self.log(f"closing a driver: {error}")
        try:
            self.sink.call("quit")
        except Exception:
            self.sink_proc.kill()
        self.sink_proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the report --

    def report(self, elapsed: float) -> int:
        command = "bash bench/run.sh " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        machine = machine_description()
        out = BENCH / "out"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = out / f"{stamp}.json"
        targets = self.targets() if self.mode != "check" else []
        data = {
            "mode": self.mode,
            "command": command,
            "seconds": elapsed,
            "machine": machine,
            "info": self.info,
            "verified_messages": self.results.verified,
            "failures": self.results.failures,
            "metrics": [
                {
                    "name": m.name,
                    "db": m.db,
                    "unit": m.unit,
                    "better": m.better,
                    "samples": m.samples,
                }
                for m in self.results.metrics.values()
            ],
            "targets": targets,
        }
        path.write_text(json.dumps(data, indent=1))
        print(render_table(self.results, self.info, machine, self.mode))
        if targets:
            print()
            print(render_targets(targets))
        print()
        print(
            f"{self.results.verified:,} messages delivered and checked by token: "
            f"{'each exactly once' if not self.results.failures else 'FAILURES below'}."
        )
        for failure in self.results.failures:
            print(f"FAILURE: {failure}")
        print(f"Mode {self.mode}, {elapsed:.0f} s. JSON: {path.relative_to(ROOT)}")
        print(f"Reproduce: {command}")
        if self.mode == "full" and not self.only and not self.args.db:
            self.write_results_md(data, command, path)
            print("Wrote bench/RESULTS.md")
        return 1 if self.results.failures else 0

    def write_results_md(self, data: dict[str, Any], command: str, path: Path) -> None:
        """bench/RESULTS.md: the latest full run, as measured (written by the run itself)."""
        machine = data["machine"]
        lines = [
            "# Benchmark results",
            "",
            "The latest full run of `bench/run.sh`, written by that run (nothing here is typed",
            "by hand). How it measures: README.md, *Benchmarks*, and `bench/bench.py`.",
            "",
            f"- Command: `{command}`",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; "
            f"the run took {data['seconds'] / 60:.0f} min",
            f"- Machine: {machine['cpus']} cores ({machine['cpu_model']}), "
            f"{machine['memory_gb']} GB RAM, {machine['platform']}",
            f"- Load average at start {self.load_at_start}, at end "
            f"{tuple(round(x, 2) for x in machine['load_at_end'])} (the machine is shared)",
            f"- JSON: `{path.relative_to(ROOT)}` (git-ignored)",
            "",
            "## Table",
            "",
            render_table(self.results, self.info, machine, self.mode),
            "",
            "## Targets",
            "",
            render_targets(data["targets"]),
            "",
            f"{self.results.verified:,} messages delivered and checked by token: "
            + ("each exactly once." if not self.results.failures else "FAILURES:"),
        ]
        lines += [f"- {failure}" for failure in self.results.failures]
        (BENCH / "RESULTS.md").write_text("\n".join(lines) + "\n")

    def targets(self) -> list[dict[str, Any]]:
        r = self.results
        found: list[dict[str, Any]] = []

        def med(name_start: str, db: str, side: str) -> float | None:
            for (name, mdb), metric in r.metrics.items():
                if mdb == db and name.startswith(name_start):
                    return metric.median(side)
            return None

        def target(what: str, value: float | None, goal: float, op: str, detail: str) -> None:
            if value is None:
                found.append({"target": what, "value": None, "goal": goal, "met": None})
                return
            met = value >= goal if op == ">=" else value <= goal
            found.append(
                {"target": what, "value": value, "goal": goal, "op": op, "met": met, "how": detail}
            )

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        for db in ("sqlite", "postgres"):
            ours = med("drain: send_all()", db, "ours")
            theirs = med("drain: send_all()", db, "dm")
            target(
                f"drain, zero latency, one worker: ours/django-mailer [{db}]",
                ratio(ours, theirs),
                3.0,
                ">=",
                "msg/s ratio",
            )
            target(
                f"drain: ours / Django's SMTP backend over one connection [{db}]",
                ratio(ours, med("baseline: Django's SMTP backend", "-", "ours")),
                0.9,
                ">=",
                "msg/s ratio",
            )
            target(
                f"SQL statements per delivered message [{db}]",
                med("drain: SQL statements per delivered message", db, "ours"),
                0.5,  # results are written as they come (issue 11): a few per write
                "<=",
                "statements/message",
            )
            target(
                f"SMTP connections per run [{db}]",
                med("drain: SMTP connections per run", db, "ours"),
                1,
                "<=",
                "connections in one send_all()",
            )
            for api in ("django.core.mail.send_mail,", "django.core.mail.send_mass_mail of N ("):
                name = f"enqueue: {api}"
                target(
                    f"{name.rstrip(',( ')}: ours/django-mailer [{db}]",
                    ratio(med(name, db, "ours"), med(name, db, "dm")),
                    2.0,
                    ">=",
                    "msg/s ratio",
                )
            target(
                f"send_mass_mail: INSERT statements for N messages [{db}]",
                med("enqueue: send_mass_mail of N, INSERT", db, "ours"),
                1,
                "<=",
                "INSERTs",
            )
        peak = "memory: manage.py send_mail peak"
        sizes = [m for m in r.metrics.values() if m.name.startswith(peak)]
        by_n: dict[tuple[int, bool], Metric] = {}
        for m in sizes:
            n = int(m.name.split("RSS, ")[1].split(" ")[0].replace(",", ""))
            by_n[(n, "attachment" in m.name)] = m
        plain = sorted(n for n, att in by_n if not att)
        if len(plain) >= 2:
            small, big = by_n[(plain[0], False)], by_n[(plain[-1], False)]
            target(
                f"peak RSS draining {plain[-1]:,} within 10% of {plain[0]:,} [postgres]",
                ratio(big.median("ours"), small.median("ours")),
                1.1,
                "<=",
                "RSS ratio",
            )
        if (2000, True) in by_n:
            m = by_n[(2000, True)]
            target(
                "peak RSS, 2,000 messages with 100 KB attachments: ours/django-mailer [postgres]",
                ratio(m.median("ours"), m.median("dm")),
                0.25,
                "<=",
                "RSS ratio",
            )
        scale = {
            int(m.name.split("N=")[1].split(" ")[0].replace(",", "")): m
            for m in r.metrics.values()
            if m.name.startswith("scale:") and "cost per message" in m.name and m.db == "postgres"
        }
        if 10000 in scale and scale:
            top = max(scale)
            target(
                f"drain cost per message at {top:,} queued within 20% of 10,000 [postgres]",
                ratio(scale[top].median("ours"), scale[10000].median("ours")),
                1.2,
                "<=",
                "cost ratio",
            )
        c1 = med("50 ms server: runmailer --concurrency 1", "postgres", "ours")
        c16 = med("50 ms server: runmailer --concurrency 16", "postgres", "ours")
        w4 = med("50 ms server: 4 x runmailer", "postgres", "ours")
        dm1 = med("50 ms server: manage.py send_mail", "postgres", "dm")
        slow = "50 ms server:"
        target(f"{slow} concurrency 16 / concurrency 1 [postgres]", ratio(c16, c1), 10, ">=", "")
        target(f"{slow} concurrency 16 / django-mailer [postgres]", ratio(c16, dm1), 15, ">=", "")
        target(f"{slow} 4 workers / 1 worker [postgres]", ratio(w4, c1), 3, ">=", "")
        for db, goal in (("postgres", 10), ("sqlite", 300), ("mariadb", 300)):
            metric = next(
                (m for m in r.metrics.values() if m.name.startswith("wake-up") and m.db == db),
                None,
            )
            if metric is None:
                continue
            values = sorted(metric.samples.get("ours", []))
            target(f"wake-up latency median [{db}]", metric.median("ours"), goal, "<=", "ms")
            if db == "postgres" and values:
                target("wake-up latency p95 [postgres]", percentile(values, 95), 50, "<=", "ms")
        return found


def _runmailer(concurrency: int) -> list[str]:
    return ["runmailer", "--concurrency", str(concurrency), "--exit-when-idle"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# -- rendering -----------------------------------------------------------------------


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def cell(values: list[float] | None) -> str:
    if not values:
        return ""
    median = statistics.median(values)
    if len(values) == 1:
        return fmt(median)
    return f"{fmt(median)} ({fmt(min(values))}–{fmt(max(values))})"


def render_table(results: Results, info: dict[str, Any], machine: dict[str, Any], mode: str) -> str:
    show61 = any("ours61" in m.samples for m in results.metrics.values())
    header = ["metric", "db", "unit", "ours", "django-mailer", "ours/theirs"]
    if show61:
        header.append("ours, Django 6.1")
    rows = [header]
    for m in results.metrics.values():
        ours, theirs = m.median("ours"), m.median("dm")
        ratio = f"{ours / theirs:.2f}×" if ours is not None and theirs else ""
        if ratio:
            ratio += " (higher is better)" if m.better == "higher" else " (lower is better)"
        row = [m.name, m.db, m.unit, cell(m.samples.get("ours")), cell(m.samples.get("dm")), ratio]
        if show61:
            row.append(cell(m.samples.get("ours61")))
        rows.append(row)
    lines = [
        f"Medians (min–max) over the repetitions; mode {mode}; "
        f"{machine['cpus']} CPUs, {machine['memory_gb']} GB RAM, {machine['platform']}",
    ]
    for side, details in info.get("sides", {}).items():
        python, django = details["python"], details["django"]
        lines.append(f"  {side}: {details['package']}, Python {python}, Django {django}")
    for db, version in info.get("databases", {}).items():
        lines.append(f"  {db}: {version}")
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows[1:]:
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_targets(targets: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | goal | met |", "| --- | --- | --- | --- |"]
    for t in targets:
        value = "-" if t["value"] is None else fmt(t["value"])
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {t.get('op', '')} {fmt(t['goal'])} | {met} |")
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    memory_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "load_at_end": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    for mode in MODES:
        group.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres", "mariadb"])
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--dj61", dest="dj61", action="store_true", default=None)
    parser.add_argument("--no-dj61", dest="dj61", action="store_false")
    args = parser.parse_args()
    return Bench(args.mode or "quick", args).run()


if __name__ == "__main__":
    sys.exit(main())

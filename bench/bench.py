"""The benchmark's orchestrator: this package against django-mailer 2.3.2 and
django-post-office 3.12, on Django 5.2 and 6.1, in one run.

Run it through ``bash bench/run.sh [--quick|--full|--check]``, which makes the
virtualenvs first. Standard library only: the measured code runs in child
processes (``bench/driver.py`` and ``bench/manage.py``), one virtualenv per
package and Django version, against one SMTP sink process (``bench/sink.py``,
offering PIPELINING or not) and the same database servers. Trials alternate
between the sides (A B C ... A B C ...), every delivered message is checked by
its token to have arrived exactly once, and the medians with min-max go to a
table, the targets (bench/targets.py) are judged, and everything goes to
``bench/out/<timestamp>.json``. The drain scenarios are in bench/drains.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import targets
from drains import DRAIN_COMMANDS, DrainScenarios, runmailer
from procs import DB_PACKAGES, SAME_PYTHON, SIDES, BenchFailure, Driver, Env
from report import (
    SERVERS,
    Results,
    machine_description,
    render_table,
    render_targets,
    write_results_md,
)
from sinkclient import Sink

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Sizes per mode. "reps" are the A/B repetitions of cheap trials, "slow_reps" of costly ones.
MODES: dict[str, dict[str, Any]] = {
    "check": {
        "reps": 1,
        # Drain rounds of ours alone after the `reps` of all (bench/drains.py).
        "pair_reps": 1,  # with --dj61 only (the same-Python side runs with Django 6.1)
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
        "parallel_ours": [4],
        "parallel_po": [[2, 10]],
        "relay": [24],
        "relay_rivals_max": 24,
    },
    "quick": {
        "reps": 3,
        "pair_reps": 2,
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
        "dj61": True,
        "parallel_ours": [4],
        "parallel_po": [[2, 10]],
        "relay": [1000],
        "relay_rivals_max": 1000,
    },
    "full": {
        "reps": 3,
        "pair_reps": 3,
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
        "parallel_ours": [4],
        "parallel_po": [[2, 10]],
        # django-mailer takes about 10 minutes per trial at 10,000: it and post-office run
        # the relay at 1,000 only.
        "relay": [1000, 10000],
        "relay_rivals_max": 1000,
    },
}

SCENARIOS = [
    "enqueue",
    "drain",
    "baselines",
    "command",
    "parallel",
    "cron",
    "latency",
    "relay",
    "wakeup",
    "scale",
    "memory",
]
NOTES = [
    "post-office's defaults: one process, THREADS_PER_PROCESS 5, BATCH_SIZE 100, LOG_LEVEL 2; "
    "it and django-mailer deliver through Django's SMTP backend, as ours does here.",
    "django-mailer 2.3.2 declares Django>=2.2 with no upper bound; on Django 6.1 it runs "
    "with the EMAIL_* settings, which Django 6.1 deprecates in favour of MAILERS.",
]

SAME_PYTHON_NOTE = (
    "Django 6.1 needs Python 3.12+, so its sides run Python {python} where the Django 5.2 "
    "sides run Python {python52}: ours on Django 5.2 also runs on Python {python} (the drain "
    'only), and the target "our drain on Django 6.1 / on Django 5.2" compares the two on '
    "Python {python}, so that it measures Django alone; the ratio across the interpreters "
    "stays beside it, for information."
)


class Bench(DrainScenarios):
    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        self.mode = mode
        self.size = dict(MODES[mode])
        self.args = args
        if args.db:
            self.size["dbs"] = [d for d in self.size["dbs"] if d in args.db]
        if args.dj61 is not None:
            self.size["dj61"] = args.dj61
        self.servers = [s for s in SERVERS if not args.server or s in args.server]
        self.only = set(args.only or [])
        self.results = Results()
        self.tmp = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
        self.run_id = time.strftime("%H%M%S")
        self.counter = 0
        self.drivers: dict[tuple[str, str], Driver] = {}
        self.broken: dict[str, str] = {}  # sides that could not start: why
        self.info: dict[str, Any] = {"notes": list(NOTES)}

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

    def package(self, side: str) -> str:
        return SIDES[side].package

    def sides(
        self,
        db: str,
        packages: tuple[str, ...] = ("ours", "dm", "po"),
        dj61: bool = True,
        same_python: bool = False,
    ) -> list[str]:
        """The sides that run on db, in trial order, of those packages and Django versions;
        with same_python (the drain only) and Django 6.1, also ours on Django 5.2 on 6.1's
        Python."""
        with_dj61 = self.size["dj61"] and dj61
        djangos = ("5.2", "6.1") if with_dj61 else ("5.2",)
        return [
            name
            for name, side in SIDES.items()
            if side.package in packages
            and side.package in DB_PACKAGES[db]
            and side.django in djangos
            and (not side.drain_only or (same_python and with_dj61))
            and name not in self.broken
        ]

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

    def fresh_queue(self, drive: Driver, n: int, **fill: Any) -> str:
        """Empty the queue and the sink, queue n messages with a new prefix; return it."""
        drive("clear")
        prefix = self.prefix()
        drive("fill", n=n, prefix=prefix, **fill)
        drive("analyze")
        self.sink.reset()
        return prefix

    # -- scenarios (the drains: bench/drains.py) --

    def scenario_enqueue(self, db: str) -> None:
        apis = [
            ("django_send_mail", "enqueue: django.core.mail.send_mail, one call per message"),
            (
                "own_send_mail",
                "enqueue: the package's own call (mailer.send_mail; post_office.mail.send), "
                "one per message",
            ),
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
                        f"{name} (N={n})",
                        db,
                        "msg/s",
                        "higher",
                        side,
                        n / got["seconds"],
                        key=("enqueue", api),
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
                            key=("enqueue-inserts",),
                        )
                    if self.mode == "check":  # deliver them too: every one exactly once
                        self.sink.reset()
                        drive("drain")
                        self.delivered(f"{name} {side}/{db}", prefix, n)
                    drive("clear")

    def scenario_cron(self, db: str) -> None:
        name = "cron tick: manage.py send_mail (post-office: send_queued_mail), empty queue"
        for side in self.sides(db):
            self.driver(side, db)("clear")
        for _rep in range(self.size["cron_reps"]):
            for side in self.sides(db):
                argv = DRAIN_COMMANDS[self.package(side)]
                proc = self.env(side, db).command(*argv).wait().check()
                self.results.add(name, db, "ms", "lower", side, proc.seconds * 1000)

    def scenario_latency(self, db: str) -> None:
        """The 50 ms server: runmailer at concurrency 1, 4, 16; 1 and 4 worker processes."""
        base = self.size["lat_base"]
        self.sink.latency(0.05)
        try:
            for _rep in range(self.size["slow_reps"]):
                for side in self.sides(db, ("ours", "dm"), dj61=False):
                    drive = self.driver(side, db)
                    if self.package(side) == "dm":
                        runs = [("manage.py send_mail", 1, base, ["send_mail"])]
                    else:
                        levels = (1, 16) if self.mode == "check" else (1, 4, 16)
                        runs = [
                            (f"runmailer --concurrency {c}", 1, base * c, runmailer(c))
                            for c in levels
                        ] + [("4 x runmailer --concurrency 1", 4, base * 4, runmailer(1))]
                    for label, processes, n, argv in runs:
                        prefix = self.fresh_queue(drive, n)
                        began = time.perf_counter()
                        procs = [self.env(side, db).command(*argv) for _ in range(processes)]
                        for proc in procs:
                            proc.wait().check()
                        wall = time.perf_counter() - began
                        stats = self.delivered(f"{label} {side}/{db}", prefix, n)
                        metric = f"50 ms server: {label}"
                        self.results.add(
                            metric, db, "msg/s", "higher", side, n / wall, key=("latency", label)
                        )
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
            for side in self.sides(db, ("ours", "dm"), dj61=False):
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
                            key=("wakeup",),
                        )
                drive("clear")

    def scenario_scale(self, db: str) -> None:
        """Per-message cost of draining S messages from a queue holding N."""
        sizes = list(self.size["scale"])
        if db == "postgres":
            sizes += self.size["scale_pg_extra"]
        sample = self.size["scale_sample"]
        for n in sizes:
            sides = self.sides(db, ("ours", "dm") if n <= 100000 else ("ours",), dj61=False)
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
                        key=("scale-cost", n),
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
                    key=("memory-rss", n, bool(kb)),
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

    def start_drivers(self, dbs: list[str]) -> None:
        """One driver per side and database. Another package that cannot start (say, on a
        Django version it does not support) is left out, and the table says so; ours fails."""
        for db in dbs:
            for side in self.sides(db, same_python=self.wanted("drain")):
                try:
                    hello = self.driver(side, db).hello
                except (BenchFailure, OSError) as error:
                    if self.package(side) == "ours":
                        raise
                    self.broken[side] = str(error).splitlines()[0]
                    self.info["notes"].append(f"{SIDES[side].label} did not run on {db}: {error}")
                    self.log(f"{side} left out: {error}")
                    continue
                self.info.setdefault("sides", {})[side] = {
                    k: hello[k] for k in ("python", "django", "package")
                }
        self.check_same_python()

    def check_same_python(self) -> None:
        """The same-Python side must run on the Python of ours on Django 6.1 (bench/venvs.sh
        names its virtualenv after it): say why it is there, or stop the run."""
        sides = self.info.get("sides", {})
        if not {SAME_PYTHON, "ours61", "ours"} <= sides.keys():
            return
        python, python61 = sides[SAME_PYTHON]["python"], sides["ours61"]["python"]
        if python != python61:
            raise BenchFailure(
                f"{SAME_PYTHON} runs Python {python}, ours61 {python61}: "
                "remake bench/.venvs (bash bench/run.sh makes them)"
            )
        note = SAME_PYTHON_NOTE.format(python=python, python52=sides["ours"]["python"])
        self.info["notes"].append(note)

    def run(self) -> int:
        started = time.time()
        self.load_at_start = tuple(round(x, 2) for x in os.getloadavg())
        self.start_sink()
        dbs = self.size["dbs"]
        pg = [d for d in dbs if d == "postgres"]
        try:
            self.start_drivers(dbs)
            plan = [
                ("enqueue", self.scenario_enqueue, dbs),
                ("drain", self.scenario_drain, dbs),
                ("baselines", lambda _db: self.scenario_baselines(), ["-"]),
                ("command", self.scenario_command, dbs),
                ("parallel", self.scenario_parallel, [d for d in dbs if d != "mariadb"]),
                ("cron", self.scenario_cron, dbs),
                ("latency", self.scenario_latency, pg),
                ("relay", self.scenario_relay, pg),
                ("wakeup", self.scenario_wakeup, dbs),
                ("scale", self.scenario_scale, [d for d in dbs if d != "mariadb"]),
                ("memory", self.scenario_memory, pg),
            ]
            for scenario, function, where in plan:
                if not self.wanted(scenario):
                    continue
                self.results.scenario = scenario
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
        djangos = ["5.2", "6.1"] if self.size["dj61"] else ["5.2"]
        # Computed in --check too, so that CI runs this code; at those sizes they mean nothing.
        pythons = {side: d["python"] for side, d in self.info.get("sides", {}).items()}
        found = targets.compute(self.results, self.mode, self.servers, djangos, pythons)
        narrowed = bool(self.only or self.args.db or self.args.server)
        if narrowed:  # what the run left out is not news
            found = [t for t in found if t["value"] is not None]
        data = {
            "mode": self.mode,
            "command": command,
            "seconds": elapsed,
            "machine": machine,
            "info": self.info,
            "json": str(path.relative_to(ROOT)),
            "verified_messages": self.results.verified,
            "failures": self.results.failures,
            "metrics": [
                {
                    "name": m.name,
                    "db": m.db,
                    "unit": m.unit,
                    "better": m.better,
                    "scenario": m.scenario,
                    "server": m.server,
                    "key": m.key,
                    "samples": m.samples,
                }
                for m in self.results.metrics.values()
            ],
            "targets": found,
        }
        path.write_text(json.dumps(data, indent=1))
        print(render_table(self.results, self.info, machine, self.mode))
        if found:
            print()
            if self.mode == "check":
                print("Targets at --check sizes (tiny: computed, not meaningful):")
            print(render_targets(found))
        print()
        print(
            f"{self.results.verified:,} messages delivered and checked by token: "
            f"{'each exactly once' if not self.results.failures else 'FAILURES below'}."
        )
        for failure in self.results.failures:
            print(f"FAILURE: {failure}")
        print(f"Mode {self.mode}, {elapsed:.0f} s. JSON: {path.relative_to(ROOT)}")
        print(f"Reproduce: {command}")
        if self.mode == "full":
            write_results_md(BENCH / "RESULTS.md", self.results, data, self.load_at_start, narrowed)
            print("Wrote bench/RESULTS.md")
        return 1 if self.results.failures else 0


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The command line that bench/run.sh passes to bench.py and crash.py alike."""
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    for mode in MODES:
        group.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres", "mariadb"])
    parser.add_argument(
        "--only",
        action="append",
        choices=[*SCENARIOS, "crash"],
        help="run only this scenario (repeatable; crash is bench/crash.py's)",
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=list(SERVERS),
        help="only this SMTP server variant (repeatable; default both)",
    )
    parser.add_argument("--dj61", dest="dj61", action="store_true", default=None)
    parser.add_argument("--no-dj61", dest="dj61", action="store_false")
    return parser


def main() -> int:
    args = argument_parser(__doc__.split("\n\n")[0]).parse_args()
    if args.only and not set(args.only) & set(SCENARIOS):
        return 0  # only bench/crash.py's scenario was asked for
    return Bench(args.mode or "quick", args).run()


if __name__ == "__main__":
    sys.exit(main())

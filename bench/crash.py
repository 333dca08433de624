"""The benchmark's crash section: SIGKILL during a drain, and what is then sent twice.

``manage.py send_mail`` drains a queue and is killed with SIGKILL at random
moments (when the sink has received a randomly chosen number of messages),
each time started again to carry on, then run to the end. Every message
carries a token, so the sink tells which arrived twice; each extra copy is
counted against the kill of the process that sent the copy before it. Against
the 50 ms server, the messages in flight at a kill (their DATA ended, their
250 not yet given) are counted too. Ours and django-mailer 2.3.2, in the same run,
on SQLite and PostgreSQL.

bench/run.sh runs it after bench/bench.py, with the same arguments
(``--only crash`` for this section alone). A full run on every database
(``--full``, or ``--full --only crash``) writes its table into
bench/RESULTS.md, under *Crash*. With
``--check`` (CI) the sizes are tiny, only ours runs, and it fails unless
every message arrived and none was sent twice outside the crash window: at
most 10 per kill at full speed, at most one per connection per kill against
the 50 ms server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import (
    BENCH,
    ROOT,
    Bench,
    BenchFailure,
    Results,
    argument_parser,
    machine_description,
    render_table,
)

# Per mode: (messages, kills) at full speed and against the 50 ms server, and repetitions.
SIZES: dict[str, dict[str, Any]] = {
    "check": {"fast": (300, 3), "slow": (40, 2), "reps": 1},
    "quick": {"fast": (2000, 10), "slow": (200, 5), "reps": 1},
    "full": {"fast": (5000, 10), "slow": (1000, 10), "reps": 1},
}
DBS = ("sqlite", "postgres")
SLOW = 0.05  # seconds the sink waits before answering the end of DATA
# Ours, per kill: at full speed, what the recorder's gate lets be sent unrecorded; against
# the slow server, one per delivery connection (send_mail has MAILER_SEND_CONCURRENCY's 2).
SEND_CONNECTIONS = 2
BOUND = {0.0: 10, SLOW: SEND_CONNECTIONS}
# The same for both: django-mailer's lock file would outlive a killed process.
EXTRA = {"MAILER_USE_FILE_LOCK": False}


@dataclass
class Trial:
    """One drain killed ``len(kills)`` times: duplicates per kill, in flight per kill."""

    kills: list[float] = field(default_factory=list)  # monotonic times of the SIGKILLs
    twice: list[int] = field(default_factory=list)  # extra copies, per kill
    in_flight: list[int] = field(default_factory=list)
    outside: int = 0  # extra copies with no kill between them and the copy before
    missing: int = 0


class CrashBench(Bench):
    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        super().__init__(mode, args)
        self.crash = SIZES[mode]
        self.size["dbs"] = [db for db in self.size["dbs"] if db in DBS]
        self.rng = random.Random(int(time.time()))
        self.results.scenario = "crash"  # the table's last column: how to measure a row again
        self.info["notes"] = []  # the drain notes are about post-office, not run here

    def sides(self, db: str, *args: Any, **kwargs: Any) -> list[str]:
        # --check judges ours alone; the other modes compare (on Django 5.2 and Python 3.11).
        wanted = ("ours",) if self.mode == "check" else ("ours", "dm")
        return [side for side in super().sides(db, *args, **kwargs) if side in wanted]

    def run(self) -> int:
        started = time.time()
        self.load_at_start = tuple(round(x, 2) for x in os.getloadavg())
        self.start_sink()
        try:
            for db in self.size["dbs"]:
                self.start_drivers([db])
                self.log(f"crash [{db}]")
                try:
                    self.scenario_crash(db)
                except BenchFailure as error:
                    self.results.failures.append(f"crash [{db}]: {error}")
                    self.log(f"FAIL crash [{db}]: {error}")
        finally:
            self.shut_down()
        return self.report(time.time() - started)

    def scenario_crash(self, db: str) -> None:
        for latency, (n, kills) in ((0.0, self.crash["fast"]), (SLOW, self.crash["slow"])):
            server = "zero-latency server" if not latency else "50 ms server"
            name = f"crash: {kills} SIGKILLs during a drain of {n:,}, {server}"
            for _rep in range(self.crash["reps"]):
                for side in self.sides(db):
                    trial = self.trial(side, db, n, kills, latency)
                    self.judge(f"{name}, {side}/{db}", side, trial, latency)
                    found = {"sent twice, in all": sum(trial.twice)}
                    found["sent twice, most after one kill"] = max(trial.twice, default=0)
                    if latency:
                        found["in flight at the kills, in all"] = sum(trial.in_flight)
                    for what, value in found.items():
                        self.results.add(f"{name}: {what}", db, "msgs", "lower", side, value)

    def trial(self, side: str, db: str, n: int, kills: int, latency: float) -> Trial:
        drive = self.driver(side, db)
        prefix = self.fresh_queue(drive, n)
        self.sink.latency(latency)
        env = self.env(side, db)
        margin = max(1, n // (kills + 2))
        points = sorted(self.rng.sample(range(margin, n - margin), kills))
        trial = Trial()
        try:
            for point in points:
                proc = env.command("send_mail", extra=EXTRA)
                while proc.popen.poll() is None and self.sink.stats()["messages"] < point:
                    time.sleep(0.001)
                if proc.popen.poll() is None:
                    proc.popen.send_signal(signal.SIGKILL)
                    trial.kills.append(time.monotonic())
                proc.wait(300)
                if proc.returncode not in (0, -signal.SIGKILL):
                    raise BenchFailure(
                        f"send_mail exited {proc.returncode}:\n{proc.stderr[-2000:]}"
                    )
            env.command("send_mail", extra=EXTRA).wait(600).check()
        finally:
            self.sink.latency(0)
        tokens = [f"tok-{prefix}-{i}" for i in range(n)]
        first: dict[str, float | None] = {}
        for start in range(0, n, 1000):  # the sink reads lines of 64 KB at most
            first.update(self.sink.times(tokens[start : start + 1000]))
        trial.missing = sum(1 for token in tokens if first[token] is None)
        trial.twice = [0] * len(trial.kills)
        for opened in self.sink.dupes().values():
            # Each later copy was sent again because the process that sent the copy
            # before it was killed: the first kill after that copy's connection opened.
            for before in opened[:-1]:
                after = [k for k, at in enumerate(trial.kills) if at > before]
                if after:
                    trial.twice[after[0]] += 1
                else:
                    trial.outside += 1
        if latency:
            trial.in_flight = [
                sum(1 for t in first.values() if t is not None and at - latency < t <= at)
                for at in trial.kills
            ]
        drive("clear")
        self.log(
            f"  {side}/{db} {n} at {latency * 1000:.0f} ms: {len(trial.kills)} kills, "
            f"sent twice per kill {trial.twice}"
            + (f", in flight {trial.in_flight}" if latency else "")
        )
        return trial

    def judge(self, what: str, side: str, trial: Trial, latency: float) -> None:
        """Nothing lost, by anyone; ours sends nothing twice beyond the crash window."""
        problems = []
        if trial.missing:
            problems.append(f"{trial.missing} never arrived")
        if side == "ours":
            if trial.outside:
                problems.append(f"{trial.outside} sent twice with no kill after the first copy")
            worst = max(trial.twice, default=0)
            if worst > BOUND[latency]:
                problems.append(f"{worst} sent twice after one kill (at most {BOUND[latency]})")
        for problem in problems:
            message = f"{what}: {problem}"
            self.results.failures.append(message)
            self.log("FAIL " + message)

    def report(self, elapsed: float) -> int:
        command = "bash bench/run.sh " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        machine = machine_description()
        out = BENCH / "out"
        out.mkdir(exist_ok=True)
        path = out / f"{time.strftime('%Y%m%d-%H%M%S')}-crash.json"
        data = {
            "mode": self.mode,
            "command": command,
            "seconds": elapsed,
            "machine": machine,
            "info": self.info,
            "failures": self.results.failures,
            "metrics": [
                {"name": m.name, "db": m.db, "unit": m.unit, "samples": m.samples}
                for m in self.results.metrics.values()
            ],
        }
        path.write_text(json.dumps(data, indent=1))
        table = render_table(self.results, self.info, machine, self.mode)
        print(table)
        for failure in self.results.failures:
            print(f"FAILURE: {failure}")
        print(f"Crash section, mode {self.mode}, {elapsed:.0f} s. JSON: {path.relative_to(ROOT)}")
        if self.mode == "full" and self.only <= {"crash"} and not self.args.db:
            write_section(table, command, elapsed, self.results)
            print("Wrote the crash section of bench/RESULTS.md")
        return 1 if self.results.failures else 0


def write_section(table: str, command: str, elapsed: float, results: Results) -> None:
    """Put the *Crash* section at the end of bench/RESULTS.md, replacing an older one."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    head = text.split("\n## Crash\n", 1)[0].rstrip("\n")
    section = [
        "",
        "## Crash",
        "",
        f"`manage.py send_mail` killed with SIGKILL at random moments of a drain, started "
        f"again after each kill, then run to the end (`bench/crash.py`; {elapsed / 60:.0f} min, "
        f"written by `{command}`). *Sent twice*: extra copies the sink received, counted "
        "against the kill of the process that sent the copy before; *in flight*: messages "
        "whose DATA had ended and whose 250 had not been given when the process died.",
        "",
        table,
        "",
        "Every message arrived." if not results.failures else "FAILURES:",
    ]
    section += [f"- {failure}" for failure in results.failures]
    path.write_text(head + "\n" + "\n".join(section) + "\n")


def main() -> int:
    args = argument_parser(__doc__.split("\n\n")[0]).parse_args()
    if args.only and "crash" not in args.only:
        return 0
    if args.db and not set(args.db) & set(DBS):
        return 0
    return CrashBench(args.mode or "quick", args).run()


if __name__ == "__main__":
    sys.exit(main())

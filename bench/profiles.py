"""Where the time of one benchmark scenario goes, for ours, django-mailer's or post-office's side.

Run it with the Python of a benchmark virtualenv (bench/run.sh makes them)::

    BENCH_SIDE=ours bench/.venvs/ours-dj52/bin/python bench/profiles.py send_mass_mail
    BENCH_SIDE=dm bench/.venvs/dm-dj52/bin/python bench/profiles.py send_mass_mail
    BENCH_SIDE=po bench/.venvs/po-dj52/bin/python bench/profiles.py drain

Scenarios: ``send_mass_mail``, ``django_send_mail``, ``own_send_mail`` (enqueue,
through the driver's own commands) and ``drain`` (``send_all()`` against a sink
SMTP server this script starts). BENCH_DB chooses the database as for the
benchmark. It prints the scenario's rate and CPU time per message without the
profiler, then the functions with the most time of their own under cProfile, and
the share of the time spent inside each package. Every thread the scenario starts
(a drain's delivery connections, its recorder) is profiled too: its time is added
to the main thread's, so the totals are CPU-like time, not wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

from sinkclient import Sink

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("BENCH_TMP", tempfile.mkdtemp(prefix="mailer-profile-"))
os.environ.setdefault("BENCH_DB_NAME", f"profile_{os.environ.get('BENCH_SIDE', 'ours')}")


def _start_sink(pipelining: bool) -> subprocess.Popen[str]:
    """The benchmark's SMTP sink on a free port; BENCH_SMTP_PORT must be set before Django."""
    sink = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sink.py")], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None
    ports = json.loads(sink.stdout.readline())
    os.environ["BENCH_SMTP_PORT"] = str(ports["smtp"])
    control = Sink(ports["control"])
    control.pipelining(pipelining)
    control.close()
    return sink


class ThreadProfiles:
    """A cProfile profiler for each thread started while it is on.

    Before Python 3.12 cProfile sees only the thread that enabled it; from 3.12 on it
    sees every thread (sys.monitoring), and only one may be active: nothing to add.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._start = threading.Thread.start

    def __enter__(self) -> ThreadProfiles:
        profiles, start = self.profiles, self._start
        if sys.version_info >= (3, 12):
            return self

        def profiled_start(thread: threading.Thread) -> None:
            run = thread.run

            def profiled_run() -> None:
                profiler = cProfile.Profile()
                profiles.append(profiler)
                profiler.runcall(run)

            thread.run = profiled_run  # type: ignore[method-assign]
            start(thread)

        threading.Thread.start = profiled_start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._start  # type: ignore[method-assign]


def _where(filename: str) -> str:
    """The package a profiled function belongs to, for the per-package summary."""
    parts = filename.replace("\\", "/").split("/")
    for name in (
        "mailer",
        "post_office",
        "django",
        "json",
        "email",
        "pickle",
        "sqlite3",
        "psycopg",
        "MySQLdb",
    ):
        if name in parts:
            return name
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "other Python"


_WAITS = {
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<built-in method time.sleep>",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenario", choices=["send_mass_mail", "django_send_mail", "own_send_mail", "drain"]
    )
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--reps", type=int, default=5, help="unprofiled runs (default 5)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument(
        "--sort", choices=["own", "cumulative"], default="own", help="list by (default own time)"
    )
    parser.add_argument(
        "--only", default="", help="list only functions whose file path contains this"
    )
    parser.add_argument(
        "--server",
        choices=["pipelining", "no-pipelining"],
        default="no-pipelining",
        help="the sink offers PIPELINING or not (default no-pipelining, as the drain target)",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="only the unprofiled runs (to compare interpreters or checkouts, run in turns)",
    )
    args = parser.parse_args()

    sink = _start_sink(args.server == "pipelining") if args.scenario == "drain" else None
    import driver  # sets Django up with the environment above

    driver.cmd_setup()

    def run(prefix: str) -> tuple[float, float]:
        driver.cmd_clear()
        if args.scenario == "drain":
            driver.cmd_fill(args.n, prefix)
            driver.cmd_analyze()  # as the benchmark does before every drain
            cpu = driver.cpu_seconds()
            began = time.perf_counter()
            driver.cmd_drain()
            return time.perf_counter() - began, driver.cpu_seconds() - cpu
        cpu = driver.cpu_seconds()
        seconds = float(driver.cmd_enqueue(args.scenario, args.n, prefix)["seconds"])
        return seconds, driver.cpu_seconds() - cpu

    runs = [run(f"warm{i}") for i in range(args.reps)]
    median = sorted(wall for wall, _cpu in runs)[len(runs) // 2]
    cpu = sorted(cpu for _wall, cpu in runs)[len(runs) // 2]
    side = os.environ.get("BENCH_SIDE", "ours")
    print(f"{side} {args.scenario} on {os.environ.get('BENCH_DB', 'sqlite')}, n={args.n}: ")
    print(f"  unprofiled median {median:.3f} s = {args.n / median:,.0f} msg/s, ")
    print(f"  {median / args.n * 1e6:.1f} µs per message (wall), ")
    print(f"  CPU {cpu / args.n * 1e6:.1f} µs per message (median of {args.reps})\n")
    if args.no_profile:
        if sink is not None:
            sink.terminate()
        return

    profiler = cProfile.Profile()
    driver.cmd_clear()
    with ThreadProfiles() as threads:
        if args.scenario == "drain":
            driver.cmd_fill(args.n, "profiled")
            driver.cmd_analyze()
            profiler.runcall(driver.cmd_drain)
        else:
            profiler.runcall(driver.cmd_enqueue, args.scenario, args.n, "profiled")
    stats = pstats.Stats(profiler, *threads.profiles)
    # A thread's time waiting on another is not its own work: leave the waits out.
    for key in [k for k in stats.stats if k[2] in _WAITS]:  # type: ignore[attr-defined]
        del stats.stats[key]  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]

    own: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        own[_where(filename)] += tottime
        if args.only in filename:
            where = f"{os.path.basename(filename)}:{line}({name})"
            rows.append((tottime, calls, cumtime, where))
    per_message = total / args.n * 1e6
    print(
        f"Profiled (every thread, waits left out): {total:.3f} s, "
        f"{per_message:.1f} µs per message, with its overhead"
    )
    print("\nOwn time by package (µs per message, share):")
    for package, spent in sorted(own.items(), key=lambda item: -item[1]):
        print(f"  {package:<14} {spent / args.n * 1e6:7.2f} µs  {spent / total:6.1%}")
    by = "own time" if args.sort == "own" else "cumulative time"
    print(f"\nTop {args.top} functions by {by}, per message: µs, calls, cumulative µs")
    key = (lambda row: row[0]) if args.sort == "own" else (lambda row: row[2])
    for tottime, calls, cumtime, where in sorted(rows, key=key, reverse=True)[: args.top]:
        own_us, cum_us = tottime / args.n * 1e6, cumtime / args.n * 1e6
        print(f"  {own_us:7.2f}  {calls / args.n:6.2f}  {cum_us:8.2f}  {where}")
    if sink is not None:
        sink.terminate()


if __name__ == "__main__":
    main()

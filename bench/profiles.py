"""Where the time of one benchmark scenario goes, for ours, django-mailer's or post-office's side.

Run it with the Python of a benchmark virtualenv (bench/run.sh makes them)::

    BENCH_SIDE=ours bench/.venvs/ours-dj52/bin/python bench/profiles.py send_mass_mail
    BENCH_SIDE=dm bench/.venvs/dm-dj52/bin/python bench/profiles.py send_mass_mail
    BENCH_SIDE=po bench/.venvs/po-dj52/bin/python bench/profiles.py drain

Scenarios: ``send_mass_mail``, ``django_send_mail``, ``own_send_mail`` (enqueue,
through the driver's own commands) and ``drain`` (``send_all()`` against a sink
SMTP server this script starts). BENCH_DB chooses the database as for the
benchmark. It prints the scenario's rate without the profiler, then the
functions with the most time of their own under cProfile, and the share of the
wall time spent inside each package.
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
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("BENCH_TMP", tempfile.mkdtemp(prefix="mailer-profile-"))
os.environ.setdefault("BENCH_DB_NAME", f"profile_{os.environ.get('BENCH_SIDE', 'ours')}")


def _start_sink() -> subprocess.Popen[str]:
    """The benchmark's SMTP sink on a free port; BENCH_SMTP_PORT must be set before Django."""
    sink = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sink.py")], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None
    os.environ["BENCH_SMTP_PORT"] = str(json.loads(sink.stdout.readline())["smtp"])
    return sink


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenario", choices=["send_mass_mail", "django_send_mail", "own_send_mail", "drain"]
    )
    parser.add_argument("-n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--reps", type=int, default=5, help="unprofiled runs (default 5)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    args = parser.parse_args()

    sink = _start_sink() if args.scenario == "drain" else None
    import driver  # sets Django up with the environment above

    driver.cmd_setup()

    def run(prefix: str) -> float:
        driver.cmd_clear()
        if args.scenario == "drain":
            driver.cmd_fill(args.n, prefix)
            began = time.perf_counter()
            driver.cmd_drain()
            return time.perf_counter() - began
        return float(driver.cmd_enqueue(args.scenario, args.n, prefix)["seconds"])

    seconds = sorted(run(f"warm{i}") for i in range(args.reps))
    median = seconds[len(seconds) // 2]
    side = os.environ.get("BENCH_SIDE", "ours")
    print(f"{side} {args.scenario} on {os.environ.get('BENCH_DB', 'sqlite')}, n={args.n}: ")
    print(f"  unprofiled median {median:.3f} s = {args.n / median:,.0f} msg/s, ")
    print(f"  {median / args.n * 1e6:.1f} µs per message\n")

    profiler = cProfile.Profile()
    driver.cmd_clear()
    if args.scenario == "drain":
        driver.cmd_fill(args.n, "profiled")
        profiler.runcall(driver.cmd_drain)
    else:
        profiler.runcall(driver.cmd_enqueue, args.scenario, args.n, "profiled")
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]

    own: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        own[_where(filename)] += tottime
        rows.append((tottime, calls, cumtime, f"{os.path.basename(filename)}:{line}({name})"))
    per_message = total / args.n * 1e6
    print(f"Profiled: {total:.3f} s, {per_message:.1f} µs per message, with its overhead")
    print("\nOwn time by package (µs per message, share):")
    for package, spent in sorted(own.items(), key=lambda item: -item[1]):
        print(f"  {package:<14} {spent / args.n * 1e6:7.2f} µs  {spent / total:6.1%}")
    print(f"\nTop {args.top} functions by own time, per message: µs, calls, cumulative µs")
    for tottime, calls, cumtime, where in sorted(rows, reverse=True)[: args.top]:
        own_us, cum_us = tottime / args.n * 1e6, cumtime / args.n * 1e6
        print(f"  {own_us:7.2f}  {calls / args.n:6.2f}  {cum_us:8.2f}  {where}")
    if sink is not None:
        sink.terminate()


if __name__ == "__main__":
    main()

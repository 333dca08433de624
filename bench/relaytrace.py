"""The 50 ms relay, traced: ``runmailer`` against a slow sink, connection by connection.

A quick loop for the relay scenario of bench/drains.py (run it with the bench's Python,
after ``bash bench/run.sh`` made bench/.venvs): queue N messages, run ``manage.py
runmailer --concurrency C --exit-when-idle`` against a sink that answers each DATA after
``--latency`` seconds, and print the time from process start to the last accept, and per
delivery connection when it opened, its first and last accept, how many it delivered and
the gaps between its accepts (the latency is the floor of a gap).

    bench/.venvs/ours-dj52/bin/python bench/relaytrace.py --db postgres --reps 3
    # A/B in one run, interleaved: the work tree against another checkout's src/
    bench/.venvs/ours-dj52/bin/python bench/relaytrace.py --src base=/tmp/base/src --src new=src

``--dm`` adds django-mailer's ``send_mail`` to each round (a minute per 1,000 at 50 ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import Driver, Env, Proc
from sinkclient import Sink

BENCH = Path(__file__).resolve().parent


def start_sink() -> tuple[subprocess.Popen[str], Sink, int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "sink.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    return proc, Sink(ports["control"]), ports["smtp"]


def describe(
    label: str, started: float, timeline: list[dict[str, Any]], n: int, show: bool
) -> float:
    accepts = sorted(t for c in timeline for t in c["accepts"])
    total = accepts[-1] - started
    busy = [c for c in timeline if c["accepts"]]
    firsts = sorted(c["accepts"][0] - started for c in busy)
    lasts = sorted(c["accepts"][-1] - started for c in busy)
    # Between accepts on one connection (django-mailer opens one connection per message:
    # then between accepts, whatever connection they came over).
    gaps = [b - a for c in busy for a, b in itertools.pairwise(c["accepts"])] or [
        b - a for a, b in itertools.pairwise(accepts)
    ]
    print(
        f"{label}: {len(accepts)}/{n} in {total:.3f} s = {n / total:.0f} msg/s; "
        f"{len(timeline)} connections; first accept {firsts[0]:.3f} s, all busy by "
        f"{firsts[-1]:.3f} s; lasts {lasts[0]:.3f}..{lasts[-1]:.3f} s; gap median "
        f"{statistics.median(gaps) * 1000:.1f} ms mean {statistics.fmean(gaps) * 1000:.1f} ms "
        f"p90 {statistics.quantiles(gaps, n=10)[-1] * 1000:.1f} ms"
    )
    if show:
        print(f"  process started at {started:.6f} (time.monotonic)")
        for number, c in enumerate(timeline):
            a = c["accepts"]
            if not a:
                print(f"  #{number:2}: opened {c['opened'] - started:.3f} s, nothing delivered")
                continue
            own = [y - x for x, y in itertools.pairwise(a)] or [0.0]
            print(
                f"  #{number:2}: opened {c['opened'] - started:.3f} first {a[0] - started:.3f} "
                f"last {a[-1] - started:.3f} n={len(a):3} gap med "
                f"{statistics.median(own) * 1000:5.1f} mean {statistics.fmean(own) * 1000:5.1f} "
                f"max {max(own) * 1000:5.1f} ms"
            )
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgres", choices=["sqlite", "postgres", "mariadb"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pipelining", action="store_true", help="the sink offers PIPELINING")
    parser.add_argument(
        "--src",
        action="append",
        metavar="LABEL=DIR[:DIR...]",
        help="run ours from DIR (a checkout's src/) as LABEL; repeatable: A B A B ...",
    )
    parser.add_argument("--dm", action="store_true", help="django-mailer's send_mail each round")
    parser.add_argument("--timeline", action="store_true", help="every connection's line")
    parser.add_argument("--wrap", default="", help="a command to run ours under (a profiler)")
    args = parser.parse_args()

    sources = [tuple(s.split("=", 1)) for s in args.src or ["ours="]]
    tmp = Path(tempfile.mkdtemp(prefix="mailer-relaytrace-"))
    sink_proc, sink, port = start_sink()
    drivers: dict[str, Driver] = {}
    results: dict[str, list[float]] = {}
    try:
        sink.pipelining(args.pipelining)
        sink.latency(args.latency)
        sides = ["ours"] + (["dm"] if args.dm else [])
        for side in sides:
            drivers[side] = Driver(Env(side, args.db, tmp, port, sink.port))
            drivers[side]("setup")
        runs = [(label, "ours", src) for label, src in sources]
        if args.dm:
            runs.append(("django-mailer", "dm", ""))
        for rep in range(args.reps):
            for label, side, src in runs:
                drive = drivers[side]
                drive("clear")
                prefix = f"t{rep}{label[:3]}{int(time.time()) % 100000}"
                drive("fill", n=args.n, prefix=prefix)
                drive("analyze")
                sink.reset()
                env = Env(side, args.db, tmp, port, sink.port)
                env.env["BENCH_DB_NAME"] = drive.env.env["BENCH_DB_NAME"]
                if src:
                    paths = [str(Path(path).resolve()) for path in src.split(":")]
                    env.env["PYTHONPATH"] = ":".join([*paths, str(BENCH)])
                argv = (
                    ["runmailer", "--concurrency", str(args.concurrency), "--exit-when-idle"]
                    if side == "ours"
                    else ["send_mail"]
                )
                wrap = shlex.split(args.wrap) if side == "ours" else []
                manage = [*wrap, env.python, str(BENCH / "manage.py"), *argv]
                proc = Proc(manage, env.env).wait().check()
                sink.wait(args.n, timeout=60)
                check = sink.verify(f"tok-{prefix}", args.n)
                if not check["ok"]:
                    print(f"{label}: NOT EXACTLY ONCE: {check}")
                total = describe(label, proc.started_clock, sink.timeline(), args.n, args.timeline)
                print(
                    f"  CPU {proc.cpu:.2f} s ({proc.cpu / args.n * 1000:.2f} ms/msg), "
                    f"wall {proc.seconds:.2f} s"
                )
                results.setdefault(label, []).append(total)
        for label, totals in results.items():
            rates = sorted(args.n / t for t in totals)
            print(
                f"{label}: median {statistics.median(rates):.1f} msg/s "
                f"({rates[0]:.1f}-{rates[-1]:.1f})"
            )
    finally:
        for drive in drivers.values():
            try:
                drive("drop")
            finally:
                drive.close()
        sink.call("quit")
        sink_proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

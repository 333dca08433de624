"""The benchmark's results: samples per metric and side, the table, the targets, RESULTS.md.

Every metric keeps the scenario (and the SMTP server variant) that measured it, so that
each row and each target can say the exact command that measures it again.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import SIDES

SERVERS = {"pipelining": "server with PIPELINING", "no-pipelining": "server without PIPELINING"}


@dataclass
class Metric:
    name: str
    db: str
    unit: str
    better: str  # "higher" or "lower"
    scenario: str = ""
    server: str = ""  # a key of SERVERS when the row depends on it
    key: tuple[Any, ...] = ()  # what the targets look the row up by (its name holds N)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, value: float) -> None:
        self.samples.setdefault(side, []).append(value)

    def median(self, side: str) -> float | None:
        values = self.samples.get(side)
        return statistics.median(values) if values else None


class Results:
    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], Metric] = {}
        self.keyed: dict[tuple[tuple[Any, ...], str], Metric] = {}
        self.failures: list[str] = []
        self.verified = 0
        self.scenario = ""  # set by the run loop: the scenario now measuring

    def metric(
        self,
        name: str,
        db: str,
        unit: str,
        better: str,
        server: str = "",
        key: tuple[Any, ...] = (),
    ) -> Metric:
        """The row of that name on that database, made (in table order) if it is new."""
        if (name, db) not in self.metrics:
            metric = Metric(name, db, unit, better, self.scenario, server, key)
            self.metrics[(name, db)] = metric
            if key:
                self.keyed[(key, db)] = metric
        return self.metrics[(name, db)]

    def add(
        self,
        name: str,
        db: str,
        unit: str,
        better: str,
        side: str,
        value: float,
        server: str = "",
        key: tuple[Any, ...] = (),
    ) -> None:
        self.metric(name, db, unit, better, server, key).add(side, value)

    def find(self, key: tuple[Any, ...], db: str) -> Metric | None:
        return self.keyed.get((key, db))

    def matching(self, db: str, *head: Any) -> list[Metric]:
        """The rows on db whose key starts with head."""
        return [m for (k, mdb), m in self.keyed.items() if mdb == db and k[: len(head)] == head]


def reproduce(
    mode: str, scenarios: list[str], db: str, server: str = "", dj61: bool = False
) -> str:
    """The command that measures a row (or a target's rows) again, alone. ``dj61``: the
    row needs the Django 6.1 sides, which --check leaves out unless told."""
    words = ["bash bench/run.sh", f"--{mode}"] + [f"--only {s}" for s in scenarios]
    if dj61 and mode == "check":
        words.append("--dj61")
    if db != "-":
        words.append(f"--db {db}")
    if server:
        words.append(f"--server {server}")
    return " ".join(words)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


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


def _ratio(metric: Metric, ours: str, theirs: str) -> str:
    a, b = metric.median(ours), metric.median(theirs)
    if a is None or not b:
        return ""
    return f"{a / b:.2f}×"


def render_table(results: Results, info: dict[str, Any], machine: dict[str, Any], mode: str) -> str:
    present = [s for s in SIDES if any(s in m.samples for m in results.metrics.values())]
    header = ["metric", "db", "unit", *(SIDES[s].label for s in present)]
    ratios = [(o, t) for o, t in (("ours", "dm"), ("ours", "po")) if o in present and t in present]
    header += [f"ours/{'django-mailer' if t == 'dm' else 'post-office'} (5.2)" for _, t in ratios]
    header.append("scenario")
    lines = [
        f"Medians (min–max) over the repetitions; mode {mode}; "
        f"{machine['cpus']} CPUs, {machine['memory_gb']} GB RAM, {machine['platform']}.",
        "Ratios: above 1 is better where the unit is msg/s, below 1 elsewhere. Baseline rows",
        "stand under the Django version they ran on. A row again, alone: `bash bench/run.sh",
        f"--{mode} --only SCENARIO --db DB` (and `--server S` where the row names a server).",
        "Compare numbers only within one run: the machine is shared.",
        "",
    ]
    for side, details in info.get("sides", {}).items():
        python, django = details["python"], details["django"]
        lines.append(f"- {side}: {details['package']}, Python {python}, Django {django}")
    for db, version in info.get("databases", {}).items():
        lines.append(f"- {db}: {version}")
    for note in info.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    for m in results.metrics.values():
        row = [m.name, m.db, m.unit, *(cell(m.samples.get(s)) for s in present)]
        row += [_ratio(m, o, t) for o, t in ratios]
        row.append(m.scenario + (f" --server {m.server}" if m.server else ""))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_targets(targets: list[dict[str, Any]]) -> str:
    lines = [
        "| target | measured | goal | met | from | reproduce |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in targets:
        value = "-" if t["value"] is None else fmt(t["value"])
        met = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        goal = f"{t['op']} {fmt(t['goal'])}"
        if t.get("informational"):
            met, goal = "(information)", "-"
        lines.append(
            f"| {t['target']} | {value} | {goal} | {met} | {t.get('how', '')} | "
            f"`{t.get('command', '')}` |"
        )
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


def write_results_md(
    path: Path,
    results: Results,
    data: dict[str, Any],
    load_at_start: tuple[float, ...],
    narrowed: bool = False,
) -> None:
    """bench/RESULTS.md: the latest full run, as measured (written by the run itself).

    A full run narrowed by ``--only``/``--db``/``--server`` writes it too, saying so;
    the *Crash* section (bench/crash.py's) of the file is kept.
    """
    machine, command = data["machine"], data["command"]
    old = path.read_text() if path.exists() else ""
    crash = old[old.index("\n## Crash\n") :] if "\n## Crash\n" in old else ""
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
        f"- Load average at start {load_at_start}, at end "
        f"{tuple(round(x, 2) for x in machine['load_at_end'])} (the machine is shared)",
        f"- JSON: `{data['json']}` (git-ignored)",
        *(
            [
                "- A subset of the full run (the command above): the scenarios, databases "
                "and servers it leaves out have no rows here"
            ]
            if narrowed
            else []
        ),
        "",
        "## Table",
        "",
        render_table(results, data["info"], machine, data["mode"]),
        "",
        "## Targets",
        "",
        render_targets(data["targets"]),
        "",
        f"{results.verified:,} messages delivered and checked by token: "
        + ("each exactly once." if not results.failures else "FAILURES:"),
    ]
    lines += [f"- {failure}" for failure in results.failures]
    path.write_text("\n".join(lines) + "\n" + crash)

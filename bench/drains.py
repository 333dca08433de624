"""The drain scenarios: how fast each package empties a queue, and at what cost.

Mixed into ``Bench`` (bench/bench.py), whose plumbing they use (drivers, the sink,
the results). Every trial queues the same messages, the packages take turns
(A B C ..., then again), the SMTP server variant alternates within each round,
and every message is checked by its token to have arrived exactly once.

- ``drain``: each package's own drain in its driver process, with its defaults
  (ours and django-mailer: ``send_all()``; post-office:
  ``send_queued_mail_until_done()``): msg/s, CPU per message, SQL per message.
  With Django 6.1, ours on Django 5.2 also runs on 6.1's Python, and each round
  gives the ratio of ours on 6.1 to ours on 5.2, on one Python and across the two.
- ``baselines``: Django's SMTP backend over one connection, and smtplib with
  pre-rendered messages over one connection (smtplib never pipelines).
- ``command``: ``manage.py send_mail`` / ``send_queued_mail`` with their defaults,
  start-up included: msg/s, CPU per message (the process and its children), RSS.
- ``parallel``: each package's documented parallel options (ours ``runmailer
  --concurrency N``; post-office ``send_queued_mail --processes N`` with
  ``THREADS_PER_PROCESS``), start-up included.
- ``relay``: a relay taking 50 ms per message: msg/s from process start to the
  last accept, ours at ``--concurrency 16`` against django-mailer's ``send_mail``.
"""

from __future__ import annotations

from typing import Any

from procs import SAME_PYTHON
from report import SERVERS

DRAIN_COMMANDS = {"ours": ["send_mail"], "dm": ["send_mail"], "po": ["send_queued_mail"]}
DRAIN_LABEL = "manage.py send_mail (post-office: send_queued_mail), defaults, incl. start-up"


def runmailer(concurrency: int) -> list[str]:
    return ["runmailer", "--concurrency", str(concurrency), "--exit-when-idle"]


def post_office(processes: int, threads: int | None) -> tuple[str, list[str], dict[str, Any]]:
    """A send_queued_mail run: its label, its arguments, its settings."""
    extra = {"POST_OFFICE": {"THREADS_PER_PROCESS": threads}} if threads else {}
    label = f"send_queued_mail --processes {processes}" + (
        f", THREADS_PER_PROCESS={threads}" if threads else ", defaults"
    )
    return label, ["send_queued_mail", "--processes", str(processes)], extra


class DrainScenarios:
    """The scenarios above; ``self`` is the running ``Bench``."""

    mode: str
    results: Any
    size: dict[str, Any]
    servers: list[str]
    sink: Any
    smtp_port: int
    info: dict[str, Any]

    def per_message(
        self, db: str, side: str, server: str, key: tuple[Any, ...], name: str, **got: Any
    ) -> None:
        """The rows of one drain trial: msg/s, and CPU ms per message when measured."""
        n = got["n"]
        rate, cpu = self.rows(db, server, key, name, n)
        rate.add(side, n / got["seconds"])
        if got.get("cpu") is not None:
            cpu.add(side, got["cpu"] / n * 1000)

    def rows(self, db: str, server: str, key: tuple[Any, ...], name: str, n: int) -> Any:
        """A drain's msg/s and CPU rows, next to each other in the table."""
        label = f"{name}, {SERVERS[server]}" if server else name
        return (
            self.results.metric(f"{label} (N={n:,})", db, "msg/s", "higher", server, key),
            self.results.metric(
                f"{label}, CPU per delivered message",
                db,
                "CPU ms/msg",
                "lower",
                server,
                (f"{key[0]}-cpu", *key[1:]),
            ),
        )

    def serve(self, server: str) -> None:
        self.sink.pipelining(server == "pipelining")

    def command_servers(self) -> list[str]:
        """The server variants of the command scenarios: --check spares the second one its
        process start-ups (the in-process drain covers both)."""
        return self.servers[:1] if self.mode == "check" else list(self.servers)

    def drain_rounds(self, db: str) -> list[list[str]]:
        """The drain's rounds, each its sides in trial order: every side ``reps`` times, then
        ours alone (its three sides) ``pair_reps`` times more, for steadier ratios between
        them (those rounds count for those ratios alone). Ours on Django 5.2 and 6.1 on one
        Python run back to back, in turn first."""
        every = self.sides(db, same_python=True)
        ours = [side for side in every if self.package(side) == "ours"]
        rounds = [list(every) for _ in range(self.size["reps"])]
        if SAME_PYTHON in every and "ours61" in every:
            rounds += [list(ours) for _ in range(self.size["pair_reps"])]
        for number, sides in enumerate(rounds):
            if number % 2 and SAME_PYTHON in sides and "ours61" in sides:
                a, b = sides.index(SAME_PYTHON), sides.index("ours61")
                sides[a], sides[b] = sides[b], sides[a]
        return rounds

    def drain_ratios(self, db: str, server: str, rates: dict[str, float]) -> None:
        """Ours on Django 6.1 / on 5.2 within one round: on one Python (the target), and
        across the two Pythons (for information)."""
        python = {side: d["python"] for side, d in self.info.get("sides", {}).items()}
        py61, py52 = python.get("ours61", "?"), python.get("ours", "?")
        for key, label, base in (
            ("same-python", f"both on Python {py61}", SAME_PYTHON),
            ("cross-python", f"Python {py61} / Python {py52}", "ours"),
        ):
            if "ours61" in rates and base in rates:
                self.results.add(
                    f"drain in process: ours on Django 6.1 / on Django 5.2, {label}, "
                    f"each round, {SERVERS[server]}",
                    db,
                    "ratio",
                    "higher",
                    "ours61",
                    rates["ours61"] / rates[base],
                    server,
                    ("drain-ratio", server, key),
                )

    def scenario_drain(self, db: str) -> None:
        n = self.size["drain"]
        name = "drain in process: the package's drain, its defaults"
        for server in self.servers:
            self.rows(db, server, ("drain", server), name, n)
        for number, sides in enumerate(self.drain_rounds(db)):
            # Ours alone (the rounds after ``reps``) give the Django 6.1 / 5.2 ratio only:
            # its msg/s and CPU rows, compared with the others', keep to the rounds all ran.
            shared = number < self.size["reps"]
            for server in self.servers:
                self.serve(server)
                rates: dict[str, float] = {}
                for side in sides:
                    drive = self.driver(side, db)
                    prefix = self.fresh_queue(drive, n)
                    got = drive("drain")
                    stats = self.delivered(f"drain {side}/{db}/{server}", prefix, n)
                    if shared:
                        self.per_message(db, side, server, ("drain", server), name, n=n, **got)
                    rates[side] = n / got["seconds"]
                    for label, unit, value, key in (
                        ("SQL statements", "stmt/msg", got["statements"] / n, "drain-sql"),
                        ("transactions", "txn/msg", got["transactions"] / n, "drain-txn"),
                        ("SMTP connections", "conn/msg", stats["connections"] / n, "drain-cpm"),
                    ):
                        self.results.add(
                            f"drain in process: {label} per delivered message",
                            db,
                            unit,
                            "lower",
                            side,
                            value,
                            key=(key,),
                        )
                    self.results.add(
                        "drain in process: SMTP connections per run",
                        db,
                        "conn",
                        "lower",
                        side,
                        stats["connections"],
                        key=("drain-connections",),
                    )
                    drive("clear")
                self.drain_ratios(db, server, rates)

    def scenario_baselines(self) -> None:
        n = self.size["drain"]
        kinds = {
            "baseline_django": "baseline: Django's SMTP backend, one connection",
            "baseline_smtplib": "baseline: raw smtplib, one connection, pre-rendered",
        }
        runs = [("ours", "baseline_django"), ("ours", "baseline_smtplib")]
        if self.size["dj61"]:
            runs.append(("ours61", "baseline_django"))  # Django 6's slower message()
        self.serve(self.servers[0])
        for _rep in range(self.size["reps"]):
            for side, kind in runs:
                drive = self.driver(side, "sqlite")
                prefix = self.prefix()
                self.sink.reset()
                got = drive(kind, n=n, prefix=prefix, port=self.smtp_port)
                stats = self.delivered(f"{kind} {side}", prefix, n)
                key = ("baseline", kind.removeprefix("baseline_"))
                self.per_message("-", side, "", key, kinds[kind], **got)
                if stats["connections"] != 1:
                    self.results.failures.append(f"{kind}: {stats['connections']} connections")

    def command_run(self, db: str, side: str, argv: list[str], n: int, **extra: Any) -> Any:
        """Queue n messages, run one command to the end; verify; return the process."""
        drive = self.driver(side, db)
        prefix = self.fresh_queue(drive, n)
        proc = self.env(side, db).command(*argv, extra=extra or None).wait().check()
        stats = self.delivered(f"{' '.join(argv)} {side}/{db}", prefix, n, timeout=60)
        drive("clear")
        return proc, stats

    def scenario_command(self, db: str) -> None:
        n = self.size["command"]
        for server in self.command_servers():
            self.rows(db, server, ("command", server), DRAIN_LABEL, n)
        for _rep in range(self.size["slow_reps"]):
            for server in self.command_servers():
                self.serve(server)
                for side in self.sides(db):
                    argv = DRAIN_COMMANDS[self.package(side)]
                    proc, _stats = self.command_run(db, side, argv, n)
                    got = {"n": n, "seconds": proc.seconds, "cpu": proc.cpu}
                    self.per_message(db, side, server, ("command", server), DRAIN_LABEL, **got)
                    self.results.add(
                        f"manage.py send_mail (post-office: send_queued_mail), peak RSS (N={n:,})",
                        db,
                        "MB",
                        "lower",
                        side,
                        proc.maxrss_mb,
                        key=("command-rss",),
                    )

    def parallel_runs(self) -> list[tuple[str, str, list[str], dict[str, Any]]]:
        runs = [
            ("ours", f"runmailer --concurrency {c}", runmailer(c), {})
            for c in self.size["parallel_ours"]
        ]
        for processes, threads in self.size["parallel_po"]:
            runs.append(("po", *post_office(processes, threads)))
        return runs

    def scenario_parallel(self, db: str) -> None:
        n = self.size["command"]
        for _package, label, _argv, _extra in self.parallel_runs():
            for server in self.command_servers():
                key = ("parallel", server, label)
                self.rows(db, server, key, f"parallel: {label}, incl. start-up", n)
        for _rep in range(self.size["slow_reps"]):
            for server in self.command_servers():
                self.serve(server)
                for package, label, argv, extra in self.parallel_runs():
                    for side in self.sides(db, (package,)):
                        proc, _stats = self.command_run(db, side, argv, n, **extra)
                        got = {"n": n, "seconds": proc.seconds, "cpu": proc.cpu}
                        name = f"parallel: {label}, incl. start-up"
                        key = ("parallel", server, label)
                        self.per_message(db, side, server, key, name, **got)

    def scenario_relay(self, db: str) -> None:
        """The 50 ms relay: process start to last accept, N messages."""
        server = self.servers[0]
        self.serve(server)
        self.sink.latency(0.05)
        po_default = post_office(1, None)
        po_best = post_office(*self.size["parallel_po"][-1])
        try:
            for n in self.size["relay"]:
                runs = [("ours", "runmailer --concurrency 16", runmailer(16), {})]
                if n <= self.size["relay_rivals_max"]:
                    runs += [("dm", "send_mail", ["send_mail"], {}), ("po", *po_default)]
                    runs.append(("po", *po_best))
                for _rep in range(self.size["slow_reps"]):
                    for package, label, argv, extra in runs:
                        proc, stats = self.command_run(db, package, argv, n, **extra)
                        got = {"n": n, "seconds": stats["last"] - proc.started_clock}
                        name = f"50 ms relay: {label}, process start to last accept"
                        key = ("relay", n, package, label)
                        self.per_message(db, package, server, key, name, cpu=proc.cpu, **got)
        finally:
            self.sink.latency(0)

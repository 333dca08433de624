"""``manage.py runmailer``: a long-running delivery worker."""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any

from django.db import DatabaseError

from mailer.conf import settings
from mailer.exceptions import TablesMissing, WorkerProcessFailed
from mailer.management.base import CommandError, MailerCommand
from mailer.queue.aliases import default_delivery_alias
from mailer.queue.schema import describe, unapplied_migrations
from mailer.runner.processes import can_fork, processes_for, run_processes, shares
from mailer.runner.worker import run_worker


class Command(MailerCommand):
    help = (
        "Deliver queued mail continuously until SIGTERM/SIGINT. Several workers, on any "
        "hosts, may run together (and with send_mail)."
    )
    listen: bool | None = None

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        self.add_number_option(
            parser,
            "--concurrency",
            "Delivery connections used in parallel (default: MAILER_CONCURRENCY).",
        )
        self.add_number_option(
            parser,
            "--processes",
            "Worker processes the connections are spread over (default: one per 8 "
            "connections, at most one per CPU; one on SQLite).",
        )
        parser.add_argument(
            "--database", default="default", help="Database alias holding the queue."
        )
        parser.add_argument(
            "--exit-when-idle",
            action="store_true",
            help="Stop once nothing is due (for batch jobs and tests).",
        )
        parser.add_argument("--debug", action="store_true", help="Log at DEBUG level.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["debug"]:
            logging.getLogger("mailer").setLevel(logging.DEBUG)
        concurrency = options["concurrency"]
        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency must be 1 or more")
        processes = options["processes"]
        if processes is not None and processes < 1:
            raise CommandError("--processes must be 1 or more")
        using = options["database"]
        default_delivery_alias()  # a misconfigured backend fails here, loudly
        require_tables(using)
        connections_wanted = concurrency or settings.CONCURRENCY
        if processes is None:
            processes = processes_for(connections_wanted, using) if can_fork() else 1
        elif processes > 1 and not can_fork():
            raise CommandError(
                "--processes: worker processes are forked, which needs os.fork and no other "
                "thread running in this process"
            )
        worker = {
            "using": using,
            "listen": self.listen,
            "exit_when_idle": options["exit_when_idle"],
        }
        if processes > 1:
            try:
                counts = run_processes(run_worker, shares(connections_wanted, processes), **worker)
            except WorkerProcessFailed as failed:
                raise CommandError(str(failed)) from failed
        else:
            counts = run_worker(concurrency=concurrency, **worker)
        self.say(f"sent {counts.sent}, deferred {counts.deferred}, failed {counts.failed}")


def require_tables(using: str) -> None:
    """Refuse to start on a database without mailer's tables: waiting would never end.

    A database that does not answer yet is waited for by the worker, as before.
    """
    try:
        unapplied = unapplied_migrations(using)
    except DatabaseError:
        return
    if unapplied:
        raise TablesMissing(describe(unapplied))

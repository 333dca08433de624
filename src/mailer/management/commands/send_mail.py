"""``manage.py send_mail``: deliver everything that is due, once, and exit."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError

from mailer.delivery.engine import SendCounts
from mailer.exceptions import DatabaseUnreachable, TablesMissing
from mailer.management.base import CommandError, MailerCommand
from mailer.management.progress import ProgressBar
from mailer.queue.aliases import default_delivery_alias
from mailer.queue.message import MessageQuerySet
from mailer.runner.lock import LockHeld, LockHeldByOtherUser
from mailer.runner.send import deliver


class Command(MailerCommand):
    help = "Deliver all queued mail that is due, then exit. Safe to run from cron every minute."
    cron_takes_value = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        self.add_number_option(
            parser, "--max", "Send at most this many messages (default: MAILER_EMAIL_MAX_BATCH)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        self._bar: ProgressBar | None = None
        try:
            counts = deliver(max_batch=options["max"], prepare=self._prepare, report_as="send_mail")
        except LockHeld as held:
            self.say(f"{held}; nothing to do.")
            return
        except LockHeldByOtherUser as error:
            raise CommandError(str(error)) from error
        except DatabaseUnreachable as unreachable:
            # One line for cron's mail; the messages concerned are in the log.
            raise CommandError(str(unreachable)) from unreachable
        except DatabaseError as error:
            if TablesMissing.from_error(error):
                raise  # MailerCommand says it in one line
            raise CommandError(f"the database is unreachable ({error})".strip()) from error
        if counts is None:
            self.say("MAILER_PAUSE_SEND is on: nothing sent.")
            return
        if self._bar is not None:
            self._bar.finish()
        self.say(summary(counts, time.monotonic() - started))

    def _prepare(self, queue: MessageQuerySet) -> Callable[[SendCounts], None] | None:
        """Before the first claim: refuse a misconfigured backend; show progress if long."""
        default_delivery_alias()
        if not self.interactive():
            return None
        due = queue.due().count()
        if due < ProgressBar.THRESHOLD:
            return None
        self._bar = ProgressBar(due, self.stdout)
        return self._bar.update


def summary(counts: SendCounts, seconds: float) -> str:
    return (
        f"sent {counts.sent}, deferred {counts.deferred}, failed {counts.failed} in {seconds:.2f} s"
    )

"""``manage.py send_mail``: deliver everything that is due, once, and exit."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.db import DatabaseError

from ...conf import settings
from ...engine import SendCounts, send_all
from ...exceptions import DatabaseUnreachable
from ...locking import LockHeld, LockHeldByOtherUser, send_lock
from ...models import Message
from ..base import CommandError, MailerCommand
from ..progress import ProgressBar


class Command(MailerCommand):
    help = "Deliver all queued mail that is due, then exit. Safe to run from cron every minute."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--max",
            type=int,
            default=None,
            help="Send at most this many messages (default: MAILER_EMAIL_MAX_BATCH).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PAUSE_SEND:
            self.say("MAILER_PAUSE_SEND is on: nothing sent.")
            return
        from ...mailers import default_delivery_alias

        default_delivery_alias()  # a misconfigured backend fails here, before any claim
        started = time.monotonic()
        try:
            with send_lock():
                counts = self._send(options["max"])
        except LockHeld as held:
            self.say(f"{held}; nothing to do.")
            return
        except LockHeldByOtherUser as error:
            raise CommandError(str(error)) from error
        except DatabaseUnreachable as unreachable:
            # One line for cron's mail; the messages concerned are in the log.
            raise CommandError(str(unreachable)) from unreachable
        except DatabaseError as error:
            raise CommandError(f"the database is unreachable ({error})".strip()) from error
        self.say(summary(counts, time.monotonic() - started))

    def _send(self, max_batch: int | None) -> SendCounts:
        bar = None
        if self.interactive():
            due = Message.objects.due().count()
            if due >= ProgressBar.THRESHOLD:
                bar = ProgressBar(due, self.stdout)
        counts = send_all(
            on_result=bar.update if bar else None,
            max_batch=max_batch,
            lock=False,
            report_as="send_mail",
        )
        if bar:
            bar.finish()
        return counts


def summary(counts: SendCounts, seconds: float) -> str:
    return (
        f"sent {counts.sent}, deferred {counts.deferred}, failed {counts.failed} in {seconds:.2f} s"
    )

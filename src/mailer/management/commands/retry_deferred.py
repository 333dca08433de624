"""``manage.py retry_deferred``: make deferred mail due now."""

from __future__ import annotations

import datetime
from argparse import ArgumentParser
from typing import Any

from mailer.conf import settings
from mailer.management.base import MailerCommand
from mailer.queue.message import Message


class Command(MailerCommand):
    help = (
        "Make deferred mail due now (it is also retried automatically with backoff). "
        "Mail past MAILER_EMAIL_MAX_RETRIES is failed instead. With "
        "MAILER_TASKS_ENQUEUE_ON_COMMIT, a drain task is enqueued for the retried mail."
    )
    cron_takes_value = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--max-age",
            type=float,
            metavar="HOURS",
            help="Only retry mail queued less than HOURS ago.",
        )
        parser.add_argument(
            "--limit", type=int, help="Retry at most this many messages, oldest first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        max_age = options.get("max_age")
        before = Message.objects.failed().count()
        count = Message.objects.retry_deferred(
            max_age=datetime.timedelta(hours=max_age) if max_age is not None else None,
            limit=options.get("limit"),
        )
        failed = Message.objects.failed().count() - before
        if count and settings.TASKS_ENQUEUE_ON_COMMIT:
            from mailer.tasks import wake  # optional: imports the Tasks framework

            wake()  # the retried mail is due now
        line = f"{count} message(s) retried"
        if failed:
            line += f", {failed} failed (retries used up)"
        self.say(line)

"""``manage.py purge_mail_log DAYS [-r success|failure|all]``: delete old log rows.

It also deletes the idempotency keys used longer than ``MAILER_IDEMPOTENCY_WINDOW``
ago, which no longer stop a message from being queued.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from mailer.management.base import MailerCommand
from mailer.queue.idempotency import IdempotencyKey
from mailer.queue.log import MessageLog
from mailer.queue.states import RESULT_DONT_SEND, RESULT_FAILURE, RESULT_SUCCESS

RESULTS = {
    "success": [RESULT_SUCCESS],
    "failure": [RESULT_FAILURE],
    "all": [RESULT_SUCCESS, RESULT_DONT_SEND, RESULT_FAILURE],
}


class Command(MailerCommand):
    help = (
        "Delete log entries older than DAYS days: successful ones, or as -r says; "
        "and idempotency keys older than MAILER_IDEMPOTENCY_WINDOW."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("days", type=int)
        parser.add_argument(
            "-r",
            "--result",
            choices=sorted(RESULTS),
            default="success",
            help="Which entries to delete (default: success).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = MessageLog.objects.purge_old_entries(options["days"], RESULTS[options["result"]])
        self.say(f"{count} log entries deleted")
        keys = IdempotencyKey.objects.purge_expired()
        if keys:
            self.say(f"{keys} expired idempotency keys deleted")

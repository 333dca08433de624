"""The queue of django-post-office 3.12, for the driver, through its documented API.

Besides Django's ``send_mail``/``send_mass_mail`` (the driver calls them; they reach
``EMAIL_BACKEND = "post_office.EmailBackend"``): its own ``post_office.mail.send``
(one message a call), ``send_many`` (its bulk API, for filling queues) and
``send_queued_mail_until_done``, what ``manage.py send_queued_mail`` runs, here in
this process and with its defaults (one process, ``THREADS_PER_PROCESS`` threads,
batches of ``BATCH_SIZE``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from post_office import mail as post_office_mail
from post_office.mail import send_queued_mail_until_done
from post_office.models import Email, Log
from sample import BODY, FROM, make_email, recipient, subject

TABLE_PREFIX = "post_office_"
QUEUE_TABLE = "post_office_email"
KEEP_TABLES = ("post_office_emailtemplate",)
DISTRIBUTION = "django-post-office"

# Its INFO lines (a few per batch of 100, not per message) would fill the orchestrator's
# terminal: the driver's stderr is the terminal, a command's is a file.
logging.getLogger("post_office").setLevel(logging.WARNING)


def counts() -> dict[str, int]:
    return {"queued": Email.objects.count(), "logged": Log.objects.count()}


def _kwargs(prefix: str, i: int) -> dict[str, Any]:
    return {
        "recipients": [recipient(i)],
        "sender": FROM,
        "subject": subject(prefix, i),
        "message": BODY,
    }


def send_one(prefix: str, i: int) -> None:
    """The package's own call for one message."""
    post_office_mail.send(**_kwargs(prefix, i))


def fill(first: int, last: int, prefix: str, attach_kb: int) -> None:
    """Queue messages first..last-1 in one transaction (``send_many``: one bulk INSERT)."""
    with transaction.atomic():
        if attach_kb:  # send_many refuses attachments; its backend stores them
            get_connection().send_messages(
                [make_email(prefix, i, attach_kb) for i in range(first, last)]
            )
        else:
            post_office_mail.send_many([_kwargs(prefix, i) for i in range(first, last)])


def drain(max_batch: int | None) -> Any:
    if max_batch is not None:
        raise ValueError("post-office drains its whole queue, batch after batch")
    lockfile = settings.POST_OFFICE["LOCK_FILE_NAME"]
    return send_queued_mail_until_done(lockfile=lockfile, processes=1)

"""The queue of django-mailer's interface, for the driver: ours and django-mailer 2.3.2.

Both are reached only through what django-mailer documents: Django's ``send_mail`` and
``send_mass_mail`` with ``EMAIL_BACKEND = "mailer.backend.DbBackend"`` (the driver
calls those), ``mailer.send_mail``, and ``mailer.engine.send_all``.
"""

from __future__ import annotations

from typing import Any

from django.core.mail import get_connection
from django.db import transaction
from django.test.utils import override_settings
from sample import BODY, FROM, make_email, recipient, subject

import mailer
from mailer.engine import send_all
from mailer.models import Message, MessageLog

TABLE_PREFIX = "mailer_"
QUEUE_TABLE = "mailer_message"
KEEP_TABLES = ("mailer_dontsendentry",)
DISTRIBUTION = "django-mailer"


def counts() -> dict[str, int]:
    return {"queued": Message.objects.count(), "logged": MessageLog.objects.count()}


def send_one(prefix: str, i: int) -> None:
    """The package's own call for one message."""
    mailer.send_mail(subject(prefix, i), BODY, FROM, [recipient(i)])


def fill(first: int, last: int, prefix: str, attach_kb: int) -> None:
    """Queue messages first..last-1 in one transaction (DbBackend.send_messages)."""
    emails = [make_email(prefix, i, attach_kb) for i in range(first, last)]
    with transaction.atomic():
        get_connection().send_messages(emails)


def drain(max_batch: int | None) -> Any:
    """``mailer.engine.send_all()`` in this process, as cron or Celery would call it."""
    with override_settings(MAILER_EMAIL_MAX_BATCH=max_batch):
        return send_all()

"""django-mailer's ``make_message``: an unsaved queue row, for code that builds its own.

Code written for django-mailer imports it from ``mailer.models``, where it is
re-exported; ``email_to_db`` and ``db_to_email`` are in :mod:`mailer.message.django_mailer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.utils import timezone

from mailer.conf import settings
from mailer.message.validation import address_key, validate
from mailer.priorities import parse_priority
from mailer.queue.dontsend import DontSendEntry
from mailer.queue.message import Message
from mailer.queue.states import new_row_state


def make_message(
    subject: str = "",
    body: str = "",
    from_email: str | None = None,
    to: Sequence[str] | None = None,
    bcc: Sequence[str] | None = None,
    attachments: list[Any] | None = None,
    headers: dict[str, Any] | None = None,
    priority: int | str | None = None,
) -> Message:
    """A new, unsaved Message holding an ``EmailMessage`` made of these parameters.

    django-mailer's helper, with its signature and meaning: ``to`` and ``bcc``
    lose the addresses on the don't-send list; ``email`` may be replaced by any
    ``EmailMessage`` (attachments, alternatives...) before the message is saved;
    call ``save()`` when it is ready to be sent, and not before: it is due from
    then on (with ``priority="deferred"``, held for ``retry_deferred``). The
    priority is a ``PRIORITY_*`` constant or its name; None means
    ``MAILER_DEFAULT_PRIORITY``. Bad input raises as queueing does.
    """
    email = EmailMessage(
        subject, body, from_email, to, bcc=bcc, attachments=attachments, headers=headers
    )
    recipients = validate(email)
    blocked = DontSendEntry.objects.blocked(recipients)
    if blocked:
        email.to = [a for a in email.to if address_key(a) not in blocked]
        email.bcc = [a for a in email.bcc if address_key(a) not in blocked]
    chosen = settings.DEFAULT_PRIORITY if priority is None else parse_priority(priority)
    message = Message(**new_row_state(chosen, timezone.now()))
    message.email = email
    return message


__all__ = ["make_message"]

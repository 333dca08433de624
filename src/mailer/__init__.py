"""Queue email in the database; deliver it in the background.

The functions here mirror ``django.core.mail``'s and put the message on the
queue instead of sending it. Each returns the number of messages queued.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "mail_admins",
    "mail_managers",
    "send_html_mail",
    "send_mail",
    "send_mass_mail",
]


def _queue(
    messages: Sequence[Any],
    *,
    priority: Any,
    using: str | None,
    connection: Any = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
) -> int:
    from .backend import DbBackend
    from .mailers import default_delivery_alias
    from .models import Message

    if isinstance(connection, DbBackend):
        mailer = connection.delivery_alias
        if priority is None:
            priority = connection.priority
    else:
        mailer = default_delivery_alias(using)
    rows = Message.objects.enqueue(
        messages, priority=priority, mailer=mailer, send_at=send_at, expires_at=expires_at
    )
    return len(rows)


def _split_priority(priority: Any, fail_silently: bool) -> tuple[Any, bool]:
    """Accept Django-style calls whose fifth positional argument is ``fail_silently``."""
    if isinstance(priority, bool):
        return None, priority
    return priority, fail_silently


def send_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    priority: int | str | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    *,
    connection: Any = None,
    html_message: str | None = None,
    using: str | None = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Queue one message to ``recipient_list``; Django's ``send_mail`` plus ``priority``.

    ``send_at`` delays delivery until that time; ``expires_at`` fails the
    message instead of sending it after that time. ``fail_silently``,
    ``auth_user`` and ``auth_password`` are accepted for compatibility and
    ignored: queueing never talks to a mail server, and credentials are not
    stored.
    """
    from django.core.mail import EmailMultiAlternatives

    priority, _ = _split_priority(priority, fail_silently)
    recipients = _recipient_list(recipient_list)
    email = EmailMultiAlternatives(subject, message, from_email, recipients, headers=headers)
    if html_message:
        email.attach_alternative(html_message, "text/html")
    return _queue(
        [email],
        priority=priority,
        using=using,
        connection=connection,
        send_at=send_at,
        expires_at=expires_at,
    )


def send_html_mail(
    subject: str,
    message: str,
    message_html: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    priority: int | str | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    connection: Any = None,
    using: str | None = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
) -> int:
    """Queue a message with a plain-text body and an HTML alternative."""
    return send_mail(
        subject,
        message,
        from_email,
        recipient_list,
        priority,
        fail_silently,
        connection=connection,
        html_message=message_html,
        using=using,
        send_at=send_at,
        expires_at=expires_at,
        headers=headers,
    )


def send_mass_mail(
    datatuple: Iterable[tuple[str, str, str | None, Sequence[str]]],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    *,
    priority: int | str | None = None,
    using: str | None = None,
) -> int:
    """Queue one message per ``(subject, message, from_email, recipient_list)`` tuple.

    All of them go in together (one INSERT per batch), or, if any is invalid,
    none of them.
    """
    from django.core.mail import EmailMessage

    emails = []
    for subject, body, sender, recipients in datatuple:
        emails.append(EmailMessage(subject, body, sender, _recipient_list(recipients)))
    return _queue(emails, priority=priority, using=using, connection=connection)


def mail_admins(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    html_message: str | None = None,
    priority: int | str | None = None,
    *,
    using: str | None = None,
) -> int:
    """Queue a message to the ``ADMINS`` setting (nothing, if it is empty)."""
    return _mail_staff("ADMINS", subject, message, connection, html_message, priority, using)


def mail_managers(
    subject: str,
    message: str,
    fail_silently: bool = False,
    connection: Any = None,
    html_message: str | None = None,
    priority: int | str | None = None,
    *,
    using: str | None = None,
) -> int:
    """Queue a message to the ``MANAGERS`` setting (nothing, if it is empty)."""
    return _mail_staff("MANAGERS", subject, message, connection, html_message, priority, using)


def _mail_staff(
    setting: str,
    subject: str,
    message: str,
    connection: Any,
    html_message: str | None,
    priority: Any,
    using: str | None,
) -> int:
    from django.conf import settings
    from django.core.mail import EmailMultiAlternatives

    recipients = _staff_addresses(setting, getattr(settings, setting))
    if not recipients:
        return 0
    email = EmailMultiAlternatives(
        f"{settings.EMAIL_SUBJECT_PREFIX}{subject}", message, settings.SERVER_EMAIL, recipients
    )
    if html_message:
        email.attach_alternative(html_message, "text/html")
    return _queue([email], priority=priority, using=using, connection=connection)


def _staff_addresses(setting: str, value: Any) -> list[str]:
    """ADMINS/MANAGERS as addresses: (name, address) pairs or, as in Django 6, plain strings."""
    from django.core.exceptions import ImproperlyConfigured

    addresses = []
    for entry in value or ():
        if isinstance(entry, list | tuple) and len(entry) == 2:
            addresses.append(str(entry[1]))
        elif isinstance(entry, str):
            addresses.append(entry)
        else:
            raise ImproperlyConfigured(
                f"The {setting} setting must list addresses or (name, address) pairs, "
                f"not {entry!r}."
            )
    return addresses


def _recipient_list(recipients: Any) -> list[str]:
    """Any iterable of addresses, as Django's functions take; a plain string is refused."""
    from .validation import recipient_list

    return recipient_list(recipients, "recipient_list")

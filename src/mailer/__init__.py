"""Queue email in the database; deliver it in the background.

The functions here mirror ``django.core.mail``'s and put the message on the
queue instead of sending it. Each returns the number of messages queued.

Positional arguments follow both Django's and django-mailer's orders, which
differ after the recipient list:

* ``send_mail(subject, message, from_email, recipient_list, priority,
  fail_silently, auth_user, auth_password)`` is django-mailer's order;
  a ``bool`` in fifth place means Django's order, ``fail_silently,
  auth_user, auth_password, connection, html_message``.
* ``mail_admins(subject, message, fail_silently, connection, X)``: ``X`` is
  django-mailer's priority when it is a priority (a ``PRIORITY_*`` constant
  or its name), otherwise Django's ``html_message``.

Each takes an ``idempotency_key`` (``send_mass_mail`` one per message, as a
fifth item of its tuples): a message whose key was already used within
``MAILER_IDEMPOTENCY_WINDOW`` is not queued, and not counted.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "mail_admins",
    "mail_managers",
    "send_html_mail",
    "send_mail",
    "send_mass_mail",
]

# Positional parameters after ``recipient_list``, in each library's order.
_DJANGO_MAILER_ORDER = ("priority", "fail_silently", "auth_user", "auth_password")
_DJANGO_ORDER = ("fail_silently", "auth_user", "auth_password", "connection", "html_message")


def send_mail(
    subject: str,
    message: str,
    from_email: str | None,
    recipient_list: Sequence[str],
    *args: Any,
    priority: int | str | None = None,
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    html_message: str | None = None,
    using: str | None = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
    headers: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Queue one message to ``recipient_list``: Django's ``send_mail`` plus ``priority``.

    ``priority`` is a ``PRIORITY_*`` constant or its name ("high", "medium",
    "low", "deferred"); default ``MAILER_DEFAULT_PRIORITY``, or the
    ``priority`` option of the DbBackend that ``connection`` or ``using``
    names. ``using`` (Django 6.1 MAILERS) names the alias whose delivery
    backend sends the message. ``connection``: a DbBackend's priority and
    delivery alias apply; any other backend is not used, since queued mail is
    delivered by the configured delivery backend. ``send_at`` delays delivery
    until that time; ``expires_at`` fails the message instead of sending it
    after that time. ``fail_silently``, ``auth_user`` and ``auth_password``
    are accepted and ignored: queueing never talks to a mail server, and
    credentials are not stored.

    ``idempotency_key`` (a str of at most 255 characters, such as
    ``f"receipt-{order.pk}"``): if a message with this key was queued within
    ``MAILER_IDEMPOTENCY_WINDOW`` (7 days), by any process, and whether or not
    it was sent since, this one is not queued and 0 is returned.
    """
    from django.core.mail import EmailMultiAlternatives

    given = _positionals(
        "send_mail",
        args,
        _DJANGO_ORDER if args and isinstance(args[0], bool) else _DJANGO_MAILER_ORDER,
        {
            "priority": priority,
            "fail_silently": fail_silently,
            "auth_user": auth_user,
            "auth_password": auth_password,
            "connection": connection,
            "html_message": html_message,
        },
    )
    recipients = _recipient_list(recipient_list)
    headers = _with_key(headers, idempotency_key)
    email = EmailMultiAlternatives(subject, message, from_email, recipients, headers=headers)
    if given["html_message"]:
        email.attach_alternative(given["html_message"], "text/html")
    return _queue(
        [email],
        priority=given["priority"],
        using=using,
        connection=given["connection"],
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
    idempotency_key: str | None = None,
) -> int:
    """Queue a message with a plain-text body and an HTML alternative (django-mailer's order).

    The keywords are :func:`send_mail`'s.
    """
    return send_mail(
        subject,
        message,
        from_email,
        recipient_list,
        priority=priority,
        connection=connection,
        html_message=message_html,
        using=using,
        send_at=send_at,
        expires_at=expires_at,
        headers=headers,
        idempotency_key=idempotency_key,
    )


def send_mass_mail(
    datatuple: Iterable[
        tuple[str, str, str | None, Sequence[str]]
        | tuple[str, str, str | None, Sequence[str], str | None]
    ],
    fail_silently: bool = False,
    auth_user: str | None = None,
    auth_password: str | None = None,
    connection: Any = None,
    *,
    priority: int | str | None = None,
    using: str | None = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
) -> int:
    """Queue one message per ``(subject, message, from_email, recipient_list)`` tuple.

    All of them go in together, with one INSERT (per ``MAILER_MESSAGES_BATCH_SIZE``
    rows), or, if any is invalid, none of them.

    A tuple may have a fifth item, the message's ``idempotency_key`` (or
    None), as for :func:`send_mail`: a message whose key was used within the
    window, or earlier in the same call, is not queued; the others are. The
    count returned leaves it out.
    """
    from django.core.mail import EmailMessage

    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.exceptions import InvalidMessage

    emails = []
    for entry in datatuple:
        items: tuple[Any, ...] = tuple(entry)
        if len(items) not in (4, 5):
            raise InvalidMessage(
                "Each send_mass_mail() item is (subject, message, from_email, recipient_list) "
                f"or those and an idempotency_key, not {len(items)} values: {items!r:.120}"
            )
        subject, body, sender, recipients = items[:4]
        headers = _with_key(None, items[4] if len(items) == 5 else None)
        emails.append(
            EmailMessage(subject, body, sender, _recipient_list(recipients), headers=headers)
        )
    return _queue(
        emails,
        priority=priority,
        using=using,
        connection=connection,
        send_at=send_at,
        expires_at=expires_at,
    )


class _StaffMail:
    """``mail_admins`` and ``mail_managers``: the same function, for another setting."""

    def __init__(self, setting: str, name: str) -> None:
        self.setting = setting
        self.__name__ = self.__qualname__ = name
        self.__doc__ = (
            f"Queue a message to the ``{setting}`` setting; queue nothing if it is empty.\n\n"
            f"``{setting}`` may list addresses (Django 6) or ``(name, address)`` pairs.\n"
            "``idempotency_key`` as for :func:`send_mail`."
        )

    def __repr__(self) -> str:
        return f"<function {self.__module__}.{self.__name__}>"

    def __call__(
        self,
        subject: str,
        message: str,
        fail_silently: bool = False,
        connection: Any = None,
        *args: Any,
        html_message: str | None = None,
        priority: int | str | None = None,
        using: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        from django.conf import settings
        from django.core.mail import EmailMultiAlternatives

        # Django imports this package while loading apps: nothing of ours before a call.
        from mailer.priorities import parse_priority

        given = _positionals(
            self.__name__,
            args,
            ("priority",) if args and _is_priority(args[0]) else ("html_message",),
            {"priority": priority, "html_message": html_message},
            already=4,
        )
        if given["priority"] is not None:
            parse_priority(given["priority"])  # bad input raises even when nobody is listed
        headers = _with_key(None, idempotency_key)
        recipients = _staff_addresses(self.setting, getattr(settings, self.setting))
        if not recipients:
            return 0
        email = EmailMultiAlternatives(
            f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
            message,
            settings.SERVER_EMAIL,
            recipients,
            headers=headers,
        )
        if given["html_message"]:
            email.attach_alternative(given["html_message"], "text/html")
        return _queue([email], priority=given["priority"], using=using, connection=connection)


mail_admins = _StaffMail("ADMINS", "mail_admins")
mail_managers = _StaffMail("MANAGERS", "mail_managers")


def _queue(
    messages: Sequence[Any],
    *,
    priority: Any,
    using: str | None,
    connection: Any = None,
    send_at: datetime.datetime | None = None,
    expires_at: datetime.datetime | None = None,
) -> int:
    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.backend import DbBackend
    from mailer.conf import mailers_configured
    from mailer.priorities import parse_priority
    from mailer.queue.aliases import DEFAULT_ALIAS, default_delivery_alias, default_priority_of
    from mailer.queue.message import Message

    if priority is not None:
        priority = parse_priority(priority)
    if using is not None and connection is not None:
        raise TypeError("'connection' is not compatible with 'using'.")
    if isinstance(connection, DbBackend):
        mailer = connection.delivery_alias
        if priority is None:
            priority = connection.priority
    else:
        mailer = default_delivery_alias(using)
        if priority is None and mailers_configured():
            priority = default_priority_of(using or DEFAULT_ALIAS)
    rows = Message.objects.enqueue(
        messages, priority=priority, mailer=mailer, send_at=send_at, expires_at=expires_at
    )
    return len(rows)


def _positionals(
    function: str,
    args: tuple[Any, ...],
    names: Sequence[str],
    keywords: dict[str, Any],
    *,
    already: int = 4,
) -> dict[str, Any]:
    """Merge positional ``args`` (named by ``names``, in order) into ``keywords``."""
    if len(args) > len(names):
        raise TypeError(
            f"{function}() takes at most {already + len(names)} positional arguments "
            f"({already + len(args)} given)"
        )
    merged = dict(keywords)
    for name, value in zip(names, args, strict=False):
        if keywords.get(name) not in (None, False):
            raise TypeError(f"{function}() got multiple values for argument {name!r}")
        merged[name] = value
    return merged


def _with_key(headers: Any, key: Any) -> Any:
    """``headers`` with the control header that carries ``key`` to the queue (None: no key).

    The key is checked here, before anything else is, so that bad input is
    refused even when nothing would be queued.
    """
    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.exceptions import InvalidHeader
    from mailer.message.validation import IDEMPOTENCY_KEY_HEADER, check_idempotency_key

    if key is None:
        return headers
    check_idempotency_key(key)
    if headers is None:
        return {IDEMPOTENCY_KEY_HEADER: key}
    if not isinstance(headers, Mapping):
        raise InvalidHeader(f"headers must be a dict, not {type(headers).__name__}.")
    if any(str(name).lower() == IDEMPOTENCY_KEY_HEADER.lower() for name in headers):
        raise TypeError(
            f"idempotency_key is given twice: as an argument and as the {IDEMPOTENCY_KEY_HEADER} "
            "header."
        )
    return {**headers, IDEMPOTENCY_KEY_HEADER: key}


def _is_priority(value: Any) -> bool:
    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.exceptions import InvalidPriority
    from mailer.priorities import parse_priority

    if value is None:
        return False
    try:
        parse_priority(value)
    except InvalidPriority:
        return False
    return True


def _staff_addresses(setting: str, value: Any) -> list[str]:
    """ADMINS/MANAGERS as addresses: (name, address) pairs or, as in Django 6, plain strings."""
    from django.utils.functional import Promise

    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.exceptions import MailerConfigurationError

    if isinstance(value, str) or not isinstance(value, list | tuple):
        if not value:
            return []
        raise MailerConfigurationError(
            f"The {setting} setting must be a list of addresses or (name, address) pairs, "
            f"not {value!r}."
        )
    addresses = []
    for entry in value:
        if isinstance(entry, list | tuple) and len(entry) == 2:
            addresses.append(str(entry[1]))
        elif isinstance(entry, str | Promise):
            addresses.append(str(entry))
        else:
            raise MailerConfigurationError(
                f"The {setting} setting must list addresses or (name, address) pairs, "
                f"not {entry!r}."
            )
    return addresses


def _recipient_list(recipients: Any) -> list[str]:
    """Any iterable of addresses, as Django's functions take; a plain string is refused."""
    # Django imports this package while loading apps: nothing of ours before a call.
    from mailer.message.validation import recipient_list

    return recipient_list(recipients, "recipient_list")

"""django-mailer's ``email_to_db`` and ``db_to_email``, over mailer's own stored format.

Code written for django-mailer imports them from ``mailer.models``. They write and
read the JSON document ``Message.message_data`` holds, and nothing else: data in
django-mailer's pickle format reads as None and is never unpickled (migration
``0009_convert_django_mailer_data`` converted the queue and the log once, with an
unpickler that rebuilds email classes only).
"""

from __future__ import annotations

from django.core.mail import EmailMessage

from mailer.exceptions import NotAnEmailMessage
from mailer.message import codec


def email_to_db(email: EmailMessage) -> str:
    """The text ``Message.message_data`` stores for ``email`` (no Message-ID is added)."""
    if not isinstance(email, EmailMessage):
        raise NotAnEmailMessage(
            f"Only email messages are stored (EmailMessage and its subclasses), "
            f"not {type(email).__name__}."
        )
    return codec.encode(email)


def db_to_email(data: str | bytes | None) -> EmailMessage | None:
    """The ``EmailMessage`` stored as ``data``; None for empty data, and for data that is
    not mailer's (a django-mailer pickle, say) or cannot be read."""
    if not data:
        return None
    try:
        return codec.decode(data)
    except ValueError:  # UndecodableMessage, or bytes that are not UTF-8
        return None


__all__ = ["db_to_email", "email_to_db"]

"""``mailer.backend.DbBackend``: an email backend that queues instead of sending."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from .priorities import parse_priority


class DbBackend(BaseEmailBackend):
    """Puts every message Django sends through it on the queue.

    Options (``get_connection(..., priority="high")`` or, with Django 6.1
    ``MAILERS``, ``"OPTIONS": {"mailer": "smtp", "priority": "high"}``):

    ``mailer``
        MAILERS alias that delivers the queued mail (required with MAILERS).
    ``priority``
        Priority of mail queued through this backend, unless a message
        carries an ``X-Mailer-Priority`` header.
    """

    def __init__(
        self,
        *args: Any,
        mailer: str | None = None,
        priority: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.priority = None if priority is None else parse_priority(priority)
        alias = getattr(self, "alias", None)  # DJANGO_COMPAT(<6.1): backends have no alias
        if alias is not None:
            from .mailers import delivery_alias_of

            self.delivery_alias = delivery_alias_of(alias)
        else:
            from .mailers import default_delivery_alias

            self.delivery_alias = mailer if mailer is not None else default_delivery_alias()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue ``email_messages`` with one INSERT per batch; return how many were queued."""
        if not email_messages:
            return 0
        from .models import Message

        rows = Message.objects.enqueue(
            list(email_messages), priority=self.priority, mailer=self.delivery_alias
        )
        return len(rows)

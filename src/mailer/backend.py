"""``mailer.backend.DbBackend``: an email backend that queues instead of sending."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from mailer.conf import mailers_configured
from mailer.exceptions import InvalidMessage, InvalidPriority, MailerConfigurationError
from mailer.priorities import parse_priority
from mailer.queue.aliases import check_delivery_alias, default_delivery_alias, delivery_alias_of

logger = logging.getLogger("mailer.backend")


class DbBackend(BaseEmailBackend):
    """Puts every message Django sends through it on the queue.

    Options (``get_connection("mailer.backend.DbBackend", priority="high")``
    or, with Django 6.1 ``MAILERS``, ``"OPTIONS": {"mailer": "smtp",
    "priority": "high"}``):

    ``mailer``
        MAILERS alias that delivers the queued mail (required with MAILERS;
        not allowed without it, where ``MAILER_EMAIL_BACKEND`` delivers).
    ``priority``
        Priority of mail queued through this backend, unless a message
        carries an ``X-Mailer-Priority`` header. Default:
        ``MAILER_DEFAULT_PRIORITY``.

    ``fail_silently``: a message that cannot be queued (bad address, header
    injection, too large) is dropped with a logged warning instead of raising;
    the others are queued. Database errors always raise.
    """

    # Says "this backend queues mail" to whoever checks that the backend delivering
    # queued mail is not one of these (mailer.queue.aliases.is_queueing_backend).
    queues_mail = True

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        mailer: str | None = None,
        priority: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        # Django 6.1 passes alias= (and, from get_connection(), _ignore_unknown_kwargs=);
        # Django 5.2 passes username= and password= from send_mail(). The base class
        # takes them all.
        super().__init__(**kwargs)
        self.fail_silently = fail_silently
        alias: str | None = getattr(self, "alias", None)  # DJANGO_COMPAT(<6.1): no alias
        try:
            self.priority = None if priority is None else parse_priority(priority)
        except InvalidPriority as error:
            if alias is None:
                raise
            raise MailerConfigurationError(
                f"MAILERS[{alias!r}]['OPTIONS']['priority']: {error}"
            ) from None
        self.delivery_alias = _delivery_alias(alias, mailer)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue ``email_messages`` with one INSERT per batch; return how many were queued.

        Recipients on the don't-send list are removed; a message left without
        recipients is logged as "don't send" and not counted.
        """
        messages = list(email_messages)
        if not messages:
            return 0
        try:
            return self._enqueue(messages)
        except InvalidMessage:
            if not self.fail_silently:
                raise
        # fail_silently: queue what can be queued, one message at a time.
        queued = 0
        for message in messages:
            try:
                queued += self._enqueue([message])
            except InvalidMessage as error:
                logger.warning("not queued (fail_silently): %r: %s", message.subject, error)
        return queued

    def _enqueue(self, messages: list[EmailMessage]) -> int:
        # App loading: Django imports EMAIL_BACKEND's module before the models are ready.
        from mailer.queue.message import Message

        rows = Message.objects.enqueue(messages, priority=self.priority, mailer=self.delivery_alias)
        return len(rows)


def _delivery_alias(alias: str | None, mailer: str | None) -> str:
    """What queued rows store in ``Message.mailer`` for a DbBackend built this way."""
    if alias is not None:  # built by Django 6.1 from MAILERS[alias]
        return delivery_alias_of(alias)
    if mailer is None:
        return default_delivery_alias()
    if not mailers_configured():
        raise MailerConfigurationError(
            f"DbBackend(mailer={mailer!r}) names a MAILERS alias, but MAILERS is not "
            "configured; MAILER_EMAIL_BACKEND delivers queued mail."
        )
    check_delivery_alias(mailer, "DbBackend's mailer option")
    return mailer

"""The log: one row for every attempt to deliver a message, or a decision not to."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.conf import settings
from mailer.message import codec
from mailer.message.summary import document_summary, stored_subject
from mailer.priorities import (
    PRIORITIES,
)
from mailer.queue.batching import delete_in_batches
from mailer.queue.provider_ids import ProviderMessageId
from mailer.queue.states import RESULT_CODES, RESULT_SUCCESS
from mailer.scrub import scrub

if TYPE_CHECKING:
    from mailer.queue.message import Message


class MessageLogQuerySet(models.QuerySet["MessageLog"]):
    def log(
        self, message: Message, result_code: str, log_message: str = "", **fields: Any
    ) -> MessageLog:
        """Record an attempt at ``message`` (the contract's signature); texts are scrubbed."""
        handled = getattr(message, "_deferred_by_handler", False)  # defer() counted it already
        if isinstance(fields.get("smtp_reply"), str):
            fields["smtp_reply"] = scrub(fields["smtp_reply"])
        entry = self.model.about(
            message,
            result_code,
            scrub(log_message) if isinstance(log_message, str) else log_message,
            attempt=message.retry_count + (0 if handled else 1),
            **fields,
        )
        entry.save(using=self.db)
        message._logged_attempt = True  # type: ignore[attr-defined]
        return entry

    def purge_old_entries(
        self, days: int, result_codes: Sequence[str] | None = None, *, batch_size: int = 5000
    ) -> int:
        """Delete log rows older than ``days`` days with the given results, in batches.

        Returns the number deleted. Defaults to successful deliveries only.
        """
        if result_codes is None:
            result_codes = [RESULT_SUCCESS]
        limit = timezone.now() - datetime.timedelta(days=days)
        old = self.filter(result__in=list(result_codes), when_attempted__lt=limit)
        return delete_in_batches(old, batch_size, before=self._delete_provider_ids)

    def _delete_provider_ids(self, log_ids: list[int]) -> None:
        ProviderMessageId.objects.using(self.db).filter(log_id__in=log_ids)._raw_delete(self.db)

    def for_message(self, message: Message) -> MessageLogQuerySet:
        return self.filter(queue_id=message.pk).order_by("when_attempted", "pk")

    def by_provider_id(self, provider_id: str) -> MessageLogQuerySet:
        """The attempts an email service provider gave the message id ``provider_id``
        (what its webhooks carry), through the indexed ``ProviderMessageId`` table."""
        found = ProviderMessageId.objects.using(self.db).filter(provider_id=provider_id)
        return self.filter(pk__in=found.values("log_id"))

    def with_refusals(self) -> MessageLogQuerySet:
        """Attempts for which the server or provider refused some recipient."""
        return self.filter(refused__gt=0)


class MessageLog(models.Model):
    """One attempt to deliver a message (or a decision not to)."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    # NULL-able text, as in django-mailer's schema: NULL means "not kept".
    message_data = models.TextField(_("message data"), null=True)  # noqa: DJ001
    message_id = models.TextField(_("Message-ID"), editable=False, null=True)  # noqa: DJ001
    when_added = models.DateTimeField(_("queued at"))
    priority = models.PositiveSmallIntegerField(_("priority"), choices=PRIORITIES)
    when_attempted = models.DateTimeField(_("attempted at"), default=timezone.now)
    result = models.CharField(_("result"), max_length=1, choices=RESULT_CODES)
    log_message = models.TextField(_("log message"))

    queue_id = models.BigIntegerField(_("queue id"), null=True, blank=True, db_index=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    recipients = models.JSONField(
        _("recipients"),
        default=list,
        blank=True,
        help_text=_(
            "[address, result, SMTP code, reply] for each recipient this attempt concerned."
        ),
    )
    refused = models.PositiveIntegerField(
        _("refused recipients"),
        default=0,
        help_text=_(
            "Recipients the server or provider refused, each with its own reply, in this "
            "attempt (as its recipients show)."
        ),
    )
    exception = models.CharField(_("exception"), max_length=200, blank=True, default="")
    smtp_code = models.PositiveSmallIntegerField(
        _("SMTP code"),
        null=True,
        blank=True,
        help_text=_("The SMTP reply code, or the HTTP status of an email service provider's API."),
    )
    smtp_reply = models.TextField(_("reply"), blank=True, default="")
    mailer = models.CharField(_("mailer"), max_length=100, blank=True, default="")
    worker = models.CharField(_("worker"), max_length=200, blank=True, default="")
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, blank=True, default="")
    subject_line = models.TextField(
        _("subject"),
        blank=True,
        default="",
        help_text=_("The message's subject, where the row does not keep the message itself."),
    )

    objects = MessageLogQuerySet.as_manager()

    class Meta:
        verbose_name = _("message log")
        verbose_name_plural = _("message logs")
        indexes = [
            models.Index(fields=["result", "when_attempted"], name="mailer_log_purge_idx"),
            models.Index(fields=["when_attempted"], name="mailer_log_time_idx"),
        ]

    def __str__(self) -> str:
        subject = self.subject
        when = f"{self.when_attempted:%Y-%m-%d %H:%M}"
        if subject is not None:
            to = self.to_addresses  # None when the message was not kept
            return f'On {when}, "{subject}" to {", ".join(to)}' if to else f'On {when}, "{subject}"'
        return f'On {when}, "{self.message_id}"'

    @classmethod
    def about(
        cls,
        message: Message,
        result: str,
        log_message: str = "",
        **options: Any,
    ) -> MessageLog:
        """A new (unsaved) log row about ``message``: its identity, priority and mailer.

        Keeps the whole message as ``MAILER_EMAIL_LOG_MESSAGE_DATA`` says (unless
        ``keep_data`` says otherwise): ``message_data`` if given (the message as
        the delivery backend left it), else the queued one; a row that does not
        keep the message keeps its subject (one that keeps it has it there:
        reading it costs a delivery nothing). ``attempt`` defaults to the
        attempts made; any other field may be given by name.
        """
        return cls.from_values(cls.values_about(message, result, log_message, **options))

    @classmethod
    def values_about(
        cls,
        message: Message,
        result: str,
        log_message: str = "",
        *,
        attempt: int | None = None,
        keep_data: bool | None = None,
        message_id: str | None = None,
        message_data: str | None = None,
        **fields: Any,
    ) -> list[Any]:
        """The values of the row :meth:`about` makes: one per column but the id, in order.

        What recording writes, without making a model instance for each result
        (Django's ``Model.__init__`` with keywords is most of what making a row costs).
        """
        if keep_data is None:
            keep_data = settings.EMAIL_LOG_MESSAGE_DATA
        if not keep_data and "subject_line" not in fields:
            fields["subject_line"] = stored_subject(message.message_data)
        fields["message_data"] = (message_data or message.message_data) if keep_data else None
        fields["message_id"] = message_id or message.stored_message_id
        fields["when_added"] = message.when_added
        fields["priority"] = message.priority
        fields["result"] = result
        fields["log_message"] = log_message
        fields["queue_id"] = message.pk
        fields["attempt"] = message.retry_count if attempt is None else attempt
        fields["mailer"] = message.mailer
        fields["idempotency_key"] = message.idempotency_key
        values = [
            fields.pop(name) if name in fields else field.get_default()
            for name, field in _named_fields(cls)
        ]
        if fields:
            raise TypeError(f"MessageLog has no field {sorted(fields)[0]!r}")
        return values

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> MessageLog:
        """The unsaved row with ``values`` (as :meth:`values_about` gives them)."""
        make: Any = cls  # positional, as Django reads rows: the id first
        row: MessageLog = make(None, *values)
        return row

    @property
    def email(self) -> EmailMessage | None:
        if not self.message_data:
            return None
        try:
            return codec.decode(self.message_data)
        except ValueError:
            return None

    @property
    def to_addresses(self) -> list[str] | None:
        summary = document_summary(self.message_data)
        return list(summary["to"]) if summary else None

    @property
    def subject(self) -> str | None:
        """The message's subject; None if the row keeps neither it nor the message."""
        if self.subject_line:
            return self.subject_line
        summary = document_summary(self.message_data)
        return str(summary["subject"]) if summary else None


@functools.cache
def _named_fields(model: type[models.Model]) -> tuple[tuple[str, models.Field[Any, Any]], ...]:
    """Every column but the id, in the table's order (as ``insert_logs`` writes them)."""
    fields = model._meta.concrete_fields
    assert fields[0] is model._meta.pk, "from_values passes the id first"
    return tuple((field.attname, field) for field in fields[1:])


# -- The don't-send list ---------------------------------------------------------

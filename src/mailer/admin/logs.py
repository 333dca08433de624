"""The log's admin: every attempt, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from mailer.admin import display, listing, search, validity
from mailer.admin.base import (
    StoredMailAdmin,
    json_value,
    reply_text,
)
from mailer.admin.filters import MailerFilter, RefusedFilter
from mailer.queue.log import MessageLog
from mailer.queue.message import Message
from mailer.queue.provider_ids import ProviderMessageId
from mailer.queue.states import RESULT_DONT_SEND, RESULT_FAILURE, RESULT_SUCCESS

# -- The log ----------------------------------------------------------------------------


NOT_KEPT_NOTE = _(
    "The log keeps the message itself (bodies, attachments) only for sent and failed mail, "
    "and only when MAILER_EMAIL_LOG_MESSAGE_DATA is on; deferred attempts never keep it. "
    "This row keeps the subject, the Message-ID, the recipients and the replies."
)
RESULT_CLASSES = {RESULT_SUCCESS: "sent", RESULT_DONT_SEND: "skipped", RESULT_FAILURE: "failed"}


@admin.register(MessageLog)
class MessageLogAdmin(StoredMailAdmin):
    list_display = (
        "id",
        "attempted_column",
        "result_column",
        "subject_column",
        "to_column",
        "reply_column",
        "attempt",
        "queue_column",
        "mailer",
    )
    list_display_links = ("id", "attempted_column")
    list_filter = ("result", RefusedFilter, "priority", MailerFilter)
    link_lookups = ("queue_id",)  # the queue entry column links to its attempts
    date_hierarchy = "when_attempted"
    # Read-only: all of them; the stored data itself is shown by the template, by permission.
    fields = readonly_fields = (
        "subject_column",
        "result_column",
        "when_attempted",
        "attempt",
        "queue_column",
        "message_id",
        "idempotency_key",
        "priority",
        "mailer",
        "when_added",
        "reply_whole",
        "exception",
        "log_message",
        "worker",
    )
    actions = ["send_copies"]

    json_fields = ("recipients",)
    dates_queryset = listing.LogDatesQuerySet

    def problems(self, obj: MessageLog) -> list[str]:
        return validity.log_row_problems(obj.result, getattr(obj, "recipients_text", None))

    def search_condition(self, term: str) -> Q:
        condition = (
            super().search_condition(term)
            | Q(message_id__icontains=term)
            | Q(recipients__icontains=term)
            | Q(subject_line__icontains=term)
            # The provider's message id, as its webhooks and its dashboard show it.
            | Q(pk__in=ProviderMessageId.objects.filter(provider_id=term).values("log_id"))
        )
        if search.is_id(term):
            condition |= Q(queue_id=int(term))
        return condition

    @admin.display(description=_("subject"))
    def subject_column(self, obj: MessageLog) -> str:
        if obj.subject_line and not self.summary(obj):  # the message itself was not kept
            return display.clipped(obj.subject_line)
        return super().subject_column(obj)

    @admin.display(description=_("recipients"))
    def to_column(self, obj: MessageLog) -> str:
        rows = display.log_recipient_rows(json_value(obj, "recipients"))
        if not rows:
            return super().to_column(obj)
        return display.addresses_cell([row.address for row in rows])

    @admin.display(description=_("result"), ordering="result")
    def result_column(self, obj: MessageLog) -> str:
        return format_html(
            '<span class="mailer-state mailer-{}">{}</span>{}',
            RESULT_CLASSES.get(obj.result, "unknown"),
            obj.get_result_display(),
            self.warnings(self.problems(obj)),
        )

    @admin.display(description=_("reply"))
    def reply_column(self, obj: MessageLog) -> str:
        return display.clipped(reply_text(obj.smtp_code, obj.smtp_reply or obj.log_message or ""))

    @admin.display(description=_("reply"))
    def reply_whole(self, obj: MessageLog) -> str:
        return reply_text(obj.smtp_code, obj.smtp_reply or obj.log_message or "")

    @admin.display(description=_("attempted at"), ordering="when_attempted")
    def attempted_column(self, obj: MessageLog) -> str:
        return display.moment(obj.when_attempted)

    @admin.display(description=_("queue entry"))
    def queue_column(self, obj: MessageLog) -> str:
        if obj.queue_id is None:
            return "—"
        url = reverse("admin:mailer_messagelog_changelist")
        return format_html('<a href="{}?queue_id={}">#{}</a>', url, obj.queue_id, obj.queue_id)

    def mail_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        queued = obj.queue_id is not None and Message.objects.filter(pk=obj.queue_id).exists()
        rows = display.log_recipient_rows(json_value(obj, "recipients"))
        context = super().mail_context(request, obj)
        view: display.EmailView = context["email"]
        if view.error == display.NOT_KEPT:
            # What is normal (deferred attempts never keep the message) is not an error:
            # the row's own columns say what it was.
            view.error = ""
            kept = (("Subject", obj.subject_line), ("Message-ID", obj.message_id or ""))
            view.headers = [(name, value) for name, value in kept if value]
            context["data_note"] = NOT_KEPT_NOTE
        return {
            **context,
            "recipients": rows,
            "provider_ids": any(row.provider_id for row in rows),
            "attempts": self.attempts(obj.queue_id),
            "queued_url": reverse("admin:mailer_message_change", args=[obj.queue_id])
            if queued
            else "",
            "current_log": obj.pk,
        }

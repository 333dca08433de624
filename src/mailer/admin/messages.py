"""The queue's admin: messages waiting, being sent, deferred or failed, and the dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from mailer.admin import dashboard, display, listing, validity
from mailer.admin.actions import send_action
from mailer.admin.base import (
    StoredMailAdmin,
    json_value,
    reply_text,
)
from mailer.admin.filters import MailerFilter, StateFilter
from mailer.queue import operations
from mailer.queue.message import Message

# -- The queue -------------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(StoredMailAdmin):
    list_display = (
        "id",
        "subject_column",
        "to_column",
        "state_column",
        "priority",
        "mailer",
        "queued_column",
        "due_column",
        "retry_count",
        "last_reply_column",
    )
    list_display_links = ("id", "subject_column")
    list_filter = (StateFilter, "priority", MailerFilter)
    date_hierarchy = "when_added"
    # Read-only: all of them; the stored data itself is shown by the template, by permission.
    fields = readonly_fields = (
        "subject_column",
        "state_column",
        "priority",
        "mailer",
        "idempotency_key",
        "when_added",
        "due_at",
        "expires_at",
        "retry_count",
        "last_reply_whole",
        "claimed_by",
        "lease_expires_at",
    )
    actions = ["retry_now", "requeue_failed", "cancel_messages", "send_copies"]

    json_fields = ("recipient_results",)
    dates_queryset = listing.MessageDatesQuerySet

    def problems(self, obj: Message) -> list[str]:
        return validity.queue_row_problems(obj.status, getattr(obj, "recipient_results_text", None))

    @admin.display(description=_("state"), ordering="status")
    def state_column(self, obj: Message) -> str:
        known = obj.status in validity.STATUSES
        return format_html(
            '<span class="mailer-state mailer-{}">{}</span>{}',
            obj.status if known else "unknown",
            obj.state if known else _("unknown"),
            self.warnings(self.problems(obj)),
        )

    @admin.display(description=_("last reply"))
    def last_reply_column(self, obj: Message) -> str:
        return display.clipped(reply_text(obj.last_code, obj.last_reply))

    @admin.display(description=_("last reply"))
    def last_reply_whole(self, obj: Message) -> str:
        return reply_text(obj.last_code, obj.last_reply)

    @admin.display(description=_("queued at"), ordering="when_added")
    def queued_column(self, obj: Message) -> str:
        return display.moment(obj.when_added)

    @admin.display(description=_("next attempt"), ordering="due_at")
    def due_column(self, obj: Message) -> str:
        return display.moment(obj.due_at)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="mailer_message_dashboard",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Counts by state and priority, the last day's deliveries, failures and workers."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        data = dashboard.gather()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Queue dashboard"),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "data": data,
            "chart": dashboard.chart(data.hours),
            "message_list": reverse("admin:mailer_message_changelist"),
            "log_list": reverse("admin:mailer_messagelog_changelist"),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/mailer/dashboard.html", context)

    def mail_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        rows = display.recipient_rows(obj.summary, json_value(obj, "recipient_results"))
        return {
            **super().mail_context(request, obj),
            "recipients": rows,
            "provider_ids": any(row.provider_id for row in rows),
            "attempts": self.attempts(obj.pk),
        }

    @send_action(_("Retry now"))
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        if not self._too_many(request, queryset):
            self._report(request, operations.retry_now(queryset))

    @send_action(_("Requeue failed messages"))
    def requeue_failed(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        if not self._too_many(request, queryset):
            self._report(request, operations.requeue_failed(queryset))

    @send_action(_("Cancel (remove from the queue)"))
    def cancel_messages(
        self, request: HttpRequest, queryset: QuerySet[Message]
    ) -> HttpResponse | None:
        if self._too_many(request, queryset):
            return None
        user = request.user.get_username() if request.user.is_authenticated else ""
        report = operations.cancel(queryset, by=user)
        self._report(request, report)
        match = request.resolver_match
        if match is not None and match.url_name == "mailer_message_change" and report.done:
            # The page of a cancelled message is gone: show where its log row is.
            return HttpResponseRedirect(reverse("admin:mailer_messagelog_changelist"))
        return None

"""The admin: the queue, the log, the don't-send list, the workers, and a dashboard.

Least privilege:

* stored mail is read-only here; nothing is added, edited or deleted by hand
  (cancelling leaves a log row);
* bodies, attachments and the HTML preview need ``mailer.view_message_body``
  (password-reset links live in bodies); search never looks into bodies
  (search.py), and the lists take no URL lookup beyond their own filters
  (lookups.py), so neither can be used to guess at a body;
* the preview is rewritten to load nothing remote (preview.py), and a
  malformed row is shown with a warning (validity.py), never an error page;
* retry now, requeue, cancel and send a copy need ``mailer.send_message``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_sameorigin

from . import dashboard, display, listing, operations, search, validity
from .compat import CHANGE_FORM_ACTIONS
from .conf import mailers_setting, settings
from .lookups import FilterLookupsOnly
from .mailers import is_queueing_backend
from .models import (
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    DontSendEntry,
    Message,
    MessageLog,
    MessageQuerySet,
    Worker,
)
from .validation import MAX_IDEMPOTENCY_KEY_LENGTH

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

    StoredMailBase = admin.ModelAdmin[Any]
    DontSendEntryBase = admin.ModelAdmin[DontSendEntry]
    WorkerBase = admin.ModelAdmin[Worker]
else:  # generic in the type stubs only
    StoredMailBase = DontSendEntryBase = WorkerBase = admin.ModelAdmin
    StrOrPromise = str

BODY_PERMISSION = "mailer.view_message_body"
SEND_PERMISSION = "mailer.send_message"
MAX_ATTEMPTS_SHOWN = 50
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)

F = TypeVar("F", bound=Callable[..., Any])


def send_action(description: StrOrPromise) -> Callable[[F], F]:
    """An action that needs ``mailer.send_message``, offered on the list and on each page."""
    where: dict[str, Any] = (
        {"location": [admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM]}
        if CHANGE_FORM_ACTIONS
        else {}  # DJANGO_COMPAT(<6.1): on the list only
    )

    def decorate(func: F) -> F:
        admin.action(description=description, permissions=["send"], **where)(func)
        return func

    return decorate


def can_view_body(request: HttpRequest) -> bool:
    return request.user.has_perm(BODY_PERMISSION)


# -- Filters -----------------------------------------------------------------------------


class StateFilter(admin.SimpleListFilter):
    """The states of ``Message.state``, plus "due now": what a worker would take next."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("due", _("due now")),
            ("queued", _("queued")),
            ("scheduled", _("scheduled")),
            ("sending", _("sending")),
            ("deferred", _("deferred")),
            ("held", _("held")),
            ("failed", _("failed")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        assert isinstance(queryset, MessageQuerySet)
        now = timezone.now()
        value = self.value()
        if value == "due":
            return queryset.due(now)
        if value == "queued":
            return queryset.queued().exclude(due_at__gt=now)
        if value == "scheduled":
            return queryset.scheduled(now)
        if value == "sending":
            return queryset.claimed()
        if value == "deferred":
            return queryset.deferred().filter(due_at__isnull=False)
        if value == "held":
            return queryset.held()
        if value == "failed":
            return queryset.failed()
        return queryset


DEFAULT_MAILER = "-"


def delivery_aliases() -> list[str]:
    """The aliases of MAILERS that deliver (those that queue are not where mail goes)."""
    return [
        alias
        for alias, config in mailers_setting().items()
        if not is_queueing_backend(config.get("BACKEND"))
    ]


class MailerFilter(admin.SimpleListFilter):
    """The delivery aliases in MAILERS (a DISTINCT over the table would read all of it)."""

    title = _("mailer")
    parameter_name = "mailer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        aliases = delivery_aliases()
        if not aliases:
            return []
        return [(DEFAULT_MAILER, _("(default delivery backend)")), *((a, a) for a in aliases)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(mailer="" if value == DEFAULT_MAILER else value)


# -- Shared by the queue and the log -----------------------------------------------------


class ReadOnly:
    """Rows written by the queue and its workers: nobody adds, edits or deletes them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StoredMailAdmin(FilterLookupsOnly, ReadOnly, StoredMailBase):
    """What ``MessageAdmin`` and ``MessageLogAdmin`` share: read-only mail, bodies by permission."""

    paginator = listing.CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    ordering = ("-id",)
    change_form_template = "admin/mailer/stored_mail_change_form.html"
    change_list_template = "admin/mailer/stored_mail_change_list.html"
    # Shows the search box; get_search_results decides what a search matches.
    search_fields = ("message_data",)
    search_help_text = _(
        "Searches subjects, senders, recipients and Message-IDs (never bodies or attachments), "
        "ids and idempotency keys (whole). Quote words to search for them together."
    )

    class Media:
        css = {"all": ["mailer/admin.css"]}

    # JSON columns the admin reads as text and decodes itself (see validity.py).
    json_fields: tuple[str, ...] = ()

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return listing.json_as_text(super().get_queryset(request), *self.json_fields)

    def problems(self, obj: Any) -> list[str]:
        """What is wrong with this row's columns (beyond its stored message)."""
        return []

    def warnings(self, problems: list[str]) -> SafeString:
        """Problems of a row, to show after a column of the list."""
        return format_html_join(
            "",
            '<br><span class="mailer-invalid">{}</span>',
            ((_("Stored data is not valid: %(problem)s") % {"problem": p},) for p in problems if p),
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return listing.SummaryChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        """The columns; "mailer" only where mail goes more than one way (else it says the
        same on every row, and the page is narrow enough)."""
        columns = super().get_list_display(request)
        if len(delivery_aliases()) > 1:
            return columns
        return [name for name in columns if name != "mailer"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        for term in search.terms(search_term):
            queryset = queryset.filter(self.search_condition(term))
        return queryset, False

    def search_condition(self, term: str) -> Q:
        condition = search.stored_data_condition(term)
        if search.is_id(term):
            condition |= Q(pk=int(term))
        if len(term) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            condition |= Q(idempotency_key=term)
        return condition

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """The page's fields; the idempotency key only on mail queued with one."""
        fields = super().get_fields(request, obj)
        if obj is None or not obj.idempotency_key:
            fields = [name for name in fields if name != "idempotency_key"]
        return fields

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:pk>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_preview",
            ),
            *super().get_urls(),
        ]

    @xframe_options_sameorigin
    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The HTML body, for the sandboxed iframe: no script runs, nothing remote loads."""
        obj = get_object_or_404(self.get_queryset(request), pk=pk)
        if not (self.has_view_permission(request, obj) and can_view_body(request)):
            raise PermissionDenied
        html = display.email_view(obj.message_data).preview()
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = PREVIEW_POLICY
        response["X-Content-Type-Options"] = "nosniff"
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "private, no-store"
        return response

    # The summary columns, from the start of the data only (see SummaryChangeList).

    def summary(self, obj: Any) -> dict[str, Any]:
        if not hasattr(obj, "_admin_summary"):
            head = obj.data_head if hasattr(obj, "data_head") else obj.message_data
            doc = display.prefix_document(head)
            obj._admin_has_data = bool(head)
            obj._admin_summary = display.summary_of(doc)
            obj._admin_data_problem = validity.document_problem(doc) if doc else ""
        return obj._admin_summary  # type: ignore[no-any-return]

    def action_checkbox(self, obj: Any) -> SafeString:
        """Django's checkbox, labelled from the summary (``str(obj)`` would read all the data)."""
        summary = self.summary(obj)
        label = f'"{summary["subject"]}" to {", ".join(summary["to"])}' if summary else ""
        return super().action_checkbox(_Labelled(obj.pk, label or f"#{obj.pk}"))

    @admin.display(description=_("subject"))
    def subject_column(self, obj: Any) -> str:
        summary = self.summary(obj)
        if not summary:
            return str(_("(stored data is not valid)")) if obj._admin_has_data else "—"
        subject = str(summary["subject"]) or str(_("(no subject)"))
        return format_html(
            "{}{}", display.clipped(subject), self.warnings([obj._admin_data_problem])
        )

    @admin.display(description=_("recipients"))
    def to_column(self, obj: Any) -> str:
        return display.addresses_cell(display.recipients_of(self.summary(obj)))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None:
            context.update(self.mail_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def mail_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        view = display.email_view(obj.message_data)
        body = can_view_body(request)
        if not body:
            view.text = view.html = None
            view.raw = view.detail = ""  # the detail of an error may quote the data
            view.attachments = []
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return {
            "email": view,
            "problems": self.problems(obj),
            "can_view_body": body,
            "preview_url": reverse(f"admin:{prefix}_preview", args=[obj.pk])
            if body and view.html is not None
            else "",
        }

    def attempts(self, queue_id: int | None) -> list[tuple[MessageLog, str]]:
        """The latest attempts at queue entry ``queue_id``, oldest first, with their recipients."""
        if queue_id is None:
            return []
        latest = MessageLog.objects.filter(queue_id=queue_id).order_by("-when_attempted", "-pk")
        logs = list(listing.json_as_text(latest, "recipients")[:MAX_ATTEMPTS_SHOWN])[::-1]
        return [(log, display.attempt_recipients(json_value(log, "recipients"))) for log in logs]

    def _too_many(self, request: HttpRequest, queryset: QuerySet[Any]) -> bool:
        if request.POST.get("select_across") != "1":
            return False
        limit = listing.COUNT_LIMIT
        if queryset.order_by().values("pk")[: limit + 1].count() <= limit:
            return False
        self.message_user(
            request,
            _(
                "More than %(limit)s messages match: narrow the list with filters, "
                "search or dates first."
            )
            % {"limit": f"{limit:,}"},
            messages.ERROR,
        )
        return True

    def _report(self, request: HttpRequest, report: operations.Report) -> None:
        level = messages.WARNING if report.skipped or not report.done else messages.SUCCESS
        if len(report.created) == 1:
            url = reverse("admin:mailer_message_change", args=[report.created[0]])
            self.message_user(
                request, format_html('{} <a href="{}">{}</a>', report, url, _("Open it")), level
            )
        else:
            self.message_user(request, str(report), level)

    @send_action(_("Send a copy"))
    def send_copies(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        selected = queryset.order_by().values("pk")[: operations.MAX_COPIES + 1].count()
        if selected > operations.MAX_COPIES:
            self.message_user(request, operations.too_many_to_copy(selected), messages.ERROR)
            return
        model = queryset.model
        rows = list(model.objects.filter(pk__in=queryset.values("pk")).order_by("pk"))
        self._report(request, operations.send_copy(rows))


def reply_text(code: int | None, reply: str) -> str:
    """A server's reply as one line: "550 5.1.1 User unknown", or "—" when there is none."""
    if code is None:
        return reply or "—"
    return f"{code} {reply}".rstrip()


def json_value(obj: Any, field: str) -> Any:
    """The value of a JSON column read as text by ``listing.json_as_text`` (None if unreadable)."""
    text = getattr(obj, f"{field}_text", None)
    return validity.stored_json(text)[0]


@dataclass(frozen=True)
class _Labelled:
    pk: Any
    label: str

    def __str__(self) -> str:
        return self.label


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        queryset = super().get_queryset(request)
        return listing.MessageDatesQuerySet(model=Message, query=queryset.query, using=queryset.db)

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
        return {
            **super().mail_context(request, obj),
            "recipients": display.recipient_rows(obj.summary, json_value(obj, "recipient_results")),
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
    list_filter = ("result", "priority", MailerFilter)
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[MessageLog]:
        queryset = super().get_queryset(request)
        return listing.LogDatesQuerySet(model=MessageLog, query=queryset.query, using=queryset.db)

    def problems(self, obj: MessageLog) -> list[str]:
        return validity.log_row_problems(obj.result, getattr(obj, "recipients_text", None))

    def search_condition(self, term: str) -> Q:
        condition = (
            super().search_condition(term)
            | Q(message_id__icontains=term)
            | Q(recipients__icontains=term)
            | Q(subject_line__icontains=term)
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
            "recipients": display.log_recipient_rows(json_value(obj, "recipients")),
            "attempts": self.attempts(obj.queue_id),
            "queued_url": reverse("admin:mailer_message_change", args=[obj.queue_id])
            if queued
            else "",
            "current_log": obj.pk,
        }


# -- The don't-send list and the workers --------------------------------------------------


@admin.register(DontSendEntry)
class DontSendEntryAdmin(FilterLookupsOnly, DontSendEntryBase):
    list_display = ("to_address", "when_added")
    search_fields = ("to_address",)
    ordering = ("-id",)


@admin.register(Worker)
class WorkerAdmin(FilterLookupsOnly, ReadOnly, WorkerBase):
    list_display = (
        "name",
        "hostname",
        "pid",
        "started_at",
        "heartbeat_at",
        "alive",
        "concurrency",
        "sent",
        "deferred",
        "failed",
    )
    ordering = ("-heartbeat_at",)

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, obj: Worker) -> bool:
        limit = timezone.now() - datetime.timedelta(seconds=settings.LEASE_SECONDS)
        return obj.heartbeat_at >= limit

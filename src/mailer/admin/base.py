"""What the queue's and the log's ModelAdmins share: read-only rows, the mail view, search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_sameorigin

from mailer.admin import display, listing, search, validity
from mailer.admin.actions import SEND_PERMISSION, can_view_body, send_action
from mailer.admin.filters import delivery_aliases
from mailer.admin.lookups import FilterLookupsOnly
from mailer.message.validation import MAX_IDEMPOTENCY_KEY_LENGTH
from mailer.queue import operations
from mailer.queue.log import MessageLog

if TYPE_CHECKING:
    StoredMailBase = admin.ModelAdmin[Any]
else:  # generic in the type stubs only
    StoredMailBase = admin.ModelAdmin

MAX_ATTEMPTS_SHOWN = 50
PREVIEW_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


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
    # The QuerySet class whose datetimes() serves the date hierarchy (see listing.BoundedDates).
    dates_queryset: type[QuerySet[Any]] = QuerySet

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = listing.json_as_text(super().get_queryset(request), *self.json_fields)
        return self.dates_queryset(model=self.model, query=queryset.query, using=queryset.db)

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

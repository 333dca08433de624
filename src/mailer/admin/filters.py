"""The list filters of the queue and the log: state, the MAILERS alias, refused recipients."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.conf import mailers_setting
from mailer.queue.aliases import is_queueing_backend
from mailer.queue.message import MessageQuerySet

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


class RefusedFilter(admin.SimpleListFilter):
    """Attempts in which the server or provider refused some recipient, sent to others or not."""

    title = _("refused recipients")
    parameter_name = "refused"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("some refused")), ("no", _("none refused"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(refused__gt=0)
        if self.value() == "no":
            return queryset.filter(refused=0)
        return queryset

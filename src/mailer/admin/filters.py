"""The list filters of the queue and the log: state, the MAILERS alias, refused recipients.

And ``ConditionFilter``, for a filter whose choices are conditions on the rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
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


class ConditionFilter(admin.SimpleListFilter):
    """A filter whose choices are each a condition: ``conditions`` holds (value, label, Q)."""

    conditions: tuple[tuple[str, Any, Q], ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(value, label) for value, label, _condition in self.conditions]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        for value, _label, condition in self.conditions:
            if self.value() == value:
                return queryset.filter(condition)
        return queryset


class RefusedFilter(ConditionFilter):
    """Attempts in which the server or provider refused some recipient, sent to others or not."""

    title = _("refused recipients")
    parameter_name = "refused"
    conditions = (
        ("yes", _("some refused"), Q(refused__gt=0)),
        ("no", _("none refused"), Q(refused=0)),
    )

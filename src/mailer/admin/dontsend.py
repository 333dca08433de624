"""The don't-send list's admin: why each address is on it, and lifting entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from mailer.admin.actions import LIFT_PERMISSION, permitted_action
from mailer.admin.filters import ConditionFilter
from mailer.admin.lookups import FilterLookupsOnly
from mailer.queue.dontsend import DontSendEntry, DontSendEntryQuerySet

if TYPE_CHECKING:
    DontSendEntryBase = admin.ModelAdmin[DontSendEntry]
else:  # generic in the type stubs only
    DontSendEntryBase = admin.ModelAdmin


class InForceFilter(ConditionFilter):
    """Entries that keep mail from their address, or those lifted."""

    title = _("in force")
    parameter_name = "lifted"
    conditions = (
        ("no", _("in force"), Q(lifted_at__isnull=True)),
        ("yes", _("lifted"), Q(lifted_at__isnull=False)),
    )


@admin.register(DontSendEntry)
class DontSendEntryAdmin(FilterLookupsOnly, DontSendEntryBase):
    """The don't-send list; lifting an entry needs ``mailer.lift_dontsendentry``.

    An entry is a record of what was reported: it is not edited; lifting it lets mail
    go to the address again and keeps it, marked, with who lifted it and when.
    """

    list_display = ("to_address", "reason", "esp_name", "when_added", "message_column", "in_force")
    list_filter = ("reason", "esp_name", InForceFilter)
    search_fields = ("to_address", "=provider_message_id")
    ordering = ("-id",)
    actions = ["lift"]
    fields = (
        "to_address",
        "reason",
        "esp_name",
        "description",
        "reported_at",
        "when_added",
        "message_column",
        "provider_message_id",
        "lifted_at",
        "lifted_by",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:  # added by hand: an address, and perhaps why
            return [f for f in self.fields if f not in ("to_address", "description")]
        return list(self.fields)

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(LIFT_PERMISSION)

    @permitted_action(_("Lift: let mail go to these addresses again"), "lift")
    def lift(self, request: HttpRequest, queryset: DontSendEntryQuerySet) -> None:
        lifted = queryset.lift(by=request.user.get_username())
        self.message_user(request, _("%(count)d entries lifted.") % {"count": lifted})

    @admin.display(description=_("in force"), boolean=True)
    def in_force(self, obj: DontSendEntry) -> bool:
        return obj.lifted_at is None

    @admin.display(description=_("message"))
    def message_column(self, obj: DontSendEntry) -> str:
        """The message the report was about: a link to its attempts."""
        if obj.queue_id is None:
            return obj.message_id or "—"
        url = reverse("admin:mailer_messagelog_changelist")
        label = obj.message_id or f"#{obj.queue_id}"
        return format_html('<a href="{}?queue_id={}">{}</a>', url, obj.queue_id, label)

"""The don't-send list's admin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from mailer.admin.lookups import FilterLookupsOnly
from mailer.queue.dontsend import DontSendEntry

if TYPE_CHECKING:
    DontSendEntryBase = admin.ModelAdmin[DontSendEntry]
else:  # generic in the type stubs only
    DontSendEntryBase = admin.ModelAdmin

# -- The don't-send list and the workers --------------------------------------------------


@admin.register(DontSendEntry)
class DontSendEntryAdmin(FilterLookupsOnly, DontSendEntryBase):
    list_display = ("to_address", "when_added")
    search_fields = ("to_address",)
    ordering = ("-id",)

"""The don't-send list's admin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin

from mailer.admin.lookups import FilterLookupsOnly
from mailer.queue.dontsend import DontSendEntry
from mailer.queue.workers import Worker

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

    StoredMailBase = admin.ModelAdmin[Any]
    DontSendEntryBase = admin.ModelAdmin[DontSendEntry]
    WorkerBase = admin.ModelAdmin[Worker]
else:  # generic in the type stubs only
    StoredMailBase = DontSendEntryBase = WorkerBase = admin.ModelAdmin
    StrOrPromise = str

# -- The don't-send list and the workers --------------------------------------------------


@admin.register(DontSendEntry)
class DontSendEntryAdmin(FilterLookupsOnly, DontSendEntryBase):
    list_display = ("to_address", "when_added")
    search_fields = ("to_address",)
    ordering = ("-id",)

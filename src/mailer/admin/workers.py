"""The workers' admin: running delivery processes as they last reported."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.admin.base import (
    ReadOnly,
)
from mailer.admin.lookups import FilterLookupsOnly
from mailer.conf import settings
from mailer.queue.workers import Worker

if TYPE_CHECKING:
    WorkerBase = admin.ModelAdmin[Worker]
else:  # generic in the type stubs only
    WorkerBase = admin.ModelAdmin


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

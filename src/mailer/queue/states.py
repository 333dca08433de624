"""The queue's words for where a message is and what an attempt came to."""

from __future__ import annotations

import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from mailer.priorities import PRIORITY_DEFERRED, PRIORITY_MEDIUM

RESULT_SUCCESS = "1"
RESULT_DONT_SEND = "2"
RESULT_FAILURE = "3"
RESULT_CODES = [
    (RESULT_SUCCESS, _("success")),
    (RESULT_DONT_SEND, _("don't send")),
    (RESULT_FAILURE, _("failure")),
]


class Status(models.TextChoices):
    QUEUED = "queued", _("queued")
    CLAIMED = "claimed", _("sending")
    DEFERRED = "deferred", _("deferred")
    FAILED = "failed", _("failed")


DUE_STATUSES = (Status.QUEUED, Status.DEFERRED)


def new_row_state(priority: int, due_at: datetime.datetime | None) -> dict[str, Any]:
    """A new queue row's priority, status and due time.

    Queued with the "deferred" priority, it is held (not due: ``retry_deferred``
    frees it) at medium priority; otherwise it is queued, due at ``due_at``.
    """
    if priority == PRIORITY_DEFERRED:
        return {"priority": PRIORITY_MEDIUM, "status": Status.DEFERRED, "due_at": None}
    return {"priority": priority, "status": Status.QUEUED, "due_at": due_at}


def count_where(condition: Q) -> models.Sum:
    """How many rows meet ``condition``, as an aggregate (portable: no FILTER clause)."""
    one = models.Case(models.When(condition, then=models.Value(1)), default=models.Value(0))
    return models.Sum(one, output_field=models.IntegerField())


def state_counts(
    queryset: models.QuerySet[Any], now: datetime.datetime
) -> tuple[dict[str, int], datetime.datetime | None]:
    """``MessageQuerySet.states``: one GROUP BY over the ``(status, due_at)`` index."""
    rows = (
        queryset.order_by()
        .values("status")
        .annotate(
            total=models.Count("*"),
            later=count_where(Q(due_at__gt=now)),
            unset=count_where(Q(due_at__isnull=True)),
            first=models.Min("due_at"),
        )
    )
    found: dict[str, dict[str, Any]] = {row["status"]: dict(row) for row in rows}

    def get(status: str, key: str) -> int:
        return int(found.get(status, {}).get(key) or 0)

    counts = {
        "queued": get(Status.QUEUED, "total") - get(Status.QUEUED, "later"),
        "scheduled": get(Status.QUEUED, "later"),
        "sending": get(Status.CLAIMED, "total"),
        "deferred": get(Status.DEFERRED, "total") - get(Status.DEFERRED, "unset"),
        "held": get(Status.DEFERRED, "unset"),
        "failed": get(Status.FAILED, "total"),
    }
    firsts = [found.get(status, {}).get("first") for status in DUE_STATUSES]
    due = [first for first in firsts if first is not None and first <= now]
    return counts, min(due) if due else None

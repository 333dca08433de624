"""The queue's words for where a message is and what an attempt came to."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

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


def count_where(condition: Q) -> models.Sum:
    """How many rows meet ``condition``, as an aggregate (portable: no FILTER clause)."""
    one = models.Case(models.When(condition, then=models.Value(1)), default=models.Value(0))
    return models.Sum(one, output_field=models.IntegerField())

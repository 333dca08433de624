"""SQLite's own SQL for the queue: the claim, and how many parameters a statement takes.

SQLite has one writer at a time: one ``UPDATE ... RETURNING`` holds its write
lock for its whole duration, so it claims atomically. Before 3.35 (no
``RETURNING``) the rows are marked with a token, read back, and given their
owner.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

from django.db import models

from mailer.queue.sql.returning import update_returning
from mailer.queue.states import DUE_STATUSES

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids of this claim's rows."""
    if sqlite3.sqlite_version_info >= (3, 35):
        return update_returning(queryset, due, limit, claim, "")
    mine = queryset.model.objects.using(queryset.db)
    owner = claim["claimed_by"]
    token = f"{owner}#{uuid.uuid4().hex[:8]}"
    picked = models.Subquery(due.values("pk")[:limit])
    mine.filter(pk__in=picked, status__in=DUE_STATUSES).update(**{**claim, "claimed_by": token})
    ids = list(mine.filter(claimed_by=token).values_list("pk", flat=True))
    mine.filter(pk__in=ids).update(claimed_by=owner)
    return ids


def max_variables(connection: Any) -> int | None:
    """How many parameters one statement may have (None: Python before 3.11 cannot say)."""
    connection.ensure_connection()
    try:
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except AttributeError:  # Python before 3.11
        return None

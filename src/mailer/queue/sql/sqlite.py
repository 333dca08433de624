"""SQLite's own SQL for the queue: the claim, and how many parameters a statement takes.

The rest is ``mailer.queue.sql.standard``'s.

SQLite has one writer at a time: one ``UPDATE ... RETURNING`` holds its write
lock for its whole duration, so it claims atomically. Before 3.35 (no
``RETURNING``) the rows are marked with a token, read back, and given their
owner.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.db import models

from mailer.queue.sql import standard
from mailer.queue.sql.returning import update_returning
from mailer.queue.sql.standard import (
    CHANNEL,
    IGNORED_KEYS_LOCKED,
    any_of,
    insert_from_json,
    insert_ignoring,
    insert_sql,
    interrupt,
    max_packet,
    shared_value_sql,
)
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


@contextmanager
def waiting_at_most(wrapper: Any, seconds: float) -> Iterator[bool]:
    """Waiting for another process's write lock is SQLite's busy timeout, which no
    interrupt ends: it is shortened for the block instead."""
    with wrapper.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (before,) = cursor.fetchone()
        cursor.execute(f"PRAGMA busy_timeout = {max(int(seconds * 1000), 1)}")
    try:
        yield True
    finally:
        with wrapper.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(before)}")


def max_params(connection: Any) -> int | None:
    """How many parameters one statement may have: the connection's own limit."""
    connection.ensure_connection()
    try:
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except AttributeError:  # Python before 3.11 cannot say
        return standard.max_params(connection)


__all__ = [
    "CHANNEL",
    "IGNORED_KEYS_LOCKED",
    "any_of",
    "claim_ids",
    "insert_from_json",
    "insert_ignoring",
    "insert_sql",
    "interrupt",
    "max_packet",
    "max_params",
    "shared_value_sql",
    "waiting_at_most",
]

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

# The functions this database shares with every other (mailer.queue.sql.Dialect).
from mailer.queue.sql.standard import CHANNEL as CHANNEL
from mailer.queue.sql.standard import IGNORED_KEYS_LOCKED as IGNORED_KEYS_LOCKED
from mailer.queue.sql.standard import any_of as any_of

# Its rows are read by a second statement: a row rewritten by the claim and read in the
# same statement holds more copies of a large row in this process at once.
from mailer.queue.sql.standard import claim_rows as claim_rows
from mailer.queue.sql.standard import insert_from_json as insert_from_json
from mailer.queue.sql.standard import insert_ignoring as insert_ignoring
from mailer.queue.sql.standard import insert_sql as insert_sql
from mailer.queue.sql.standard import interrupter as interrupter
from mailer.queue.sql.standard import max_packet as max_packet
from mailer.queue.sql.standard import retrying_deadlocks as retrying_deadlocks
from mailer.queue.sql.standard import shared_value_sql as shared_value_sql
from mailer.queue.states import DUE_STATUSES

ONE_WRITER = True  # one write transaction at a time, for the whole database file

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

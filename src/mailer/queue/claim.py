"""Claiming due messages: one short statement or transaction per claim, per database."""

from __future__ import annotations

import datetime
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

from django.db import connections, models, transaction
from django.utils import timezone

from mailer.conf import settings
from mailer.queue.rows import bounded, take_bounded
from mailer.queue.states import DUE_STATUSES, Status

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet


def claim_rows(
    queryset: MessageQuerySet,
    owner: str,
    limit: int,
    *,
    lease: float,
    now: datetime.datetime | None = None,
) -> list[Message]:
    """``MessageQuerySet.claim``: mark up to ``limit`` due rows as ``owner``'s and read them."""
    now = now or timezone.now()
    claim = {
        "status": Status.CLAIMED,
        "claimed_by": owner,
        "lease_expires_at": now + datetime.timedelta(seconds=lease),
    }
    connection = connections[queryset.db]
    due = queryset.due(now).in_send_order()
    mine = queryset.model.objects.using(queryset.db)
    if connection.vendor == "postgresql":
        ids = _claim_returning(queryset, due, limit, claim, " FOR UPDATE SKIP LOCKED")
    elif connection.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35):
        # One UPDATE holds SQLite's write lock for its whole duration.
        ids = _claim_returning(queryset, due, limit, claim, "")
    elif connection.features.has_select_for_update:
        skip = connection.features.has_select_for_update_skip_locked
        with transaction.atomic(using=queryset.db):
            ids = list(due.select_for_update(skip_locked=skip).values_list("pk", flat=True)[:limit])
            if ids:
                mine.filter(pk__in=ids).update(**claim)
    else:  # SQLite before 3.35: no RETURNING; mark, then read back this claim's rows
        token = f"{owner}#{uuid.uuid4().hex[:8]}"
        picked = models.Subquery(due.values("pk")[:limit])
        mine.filter(pk__in=picked, status__in=DUE_STATUSES).update(**{**claim, "claimed_by": token})
        ids = list(mine.filter(claimed_by=token).values_list("pk", flat=True))
        mine.filter(pk__in=ids).update(claimed_by=owner)
    if not ids:
        return []
    # Rows over MAILER_MAX_MESSAGE_SIZE come without their data (rows.bounded).
    claimed = list(
        bounded(
            mine.filter(pk__in=ids).order_by("priority", "due_at", "pk"), settings.MAX_MESSAGE_SIZE
        )
    )
    take_bounded(claimed)
    return claimed


def _claim_returning(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any], lock: str
) -> list[int]:
    """Claim in one ``UPDATE ... RETURNING`` statement; return the ids claimed."""
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    meta = queryset.model._meta
    picked_sql, picked_params = due.values("pk")[:limit].query.get_compiler(queryset.db).as_sql()
    columns = {field.name: str(field.column) for field in meta.concrete_fields}
    assignments = ", ".join(f"{quote(columns[name])} = %s" for name in claim)
    pk = quote(columns["id"])
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {pk} IN ({picked_sql}{lock}) RETURNING {pk}"
    )
    fields = {field.name: field for field in meta.concrete_fields}
    values = [fields[name].get_db_prep_save(v, connection) for name, v in claim.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *picked_params])
        return [row[0] for row in cursor.fetchall()]

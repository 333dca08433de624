"""Claiming due messages: one short statement or transaction per claim.

The statements are each database's own (``mailer.queue.sql``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils import timezone

from mailer.conf import settings
from mailer.queue.rows import bounded, take_bounded
from mailer.queue.sql import mysql, postgres, sqlite
from mailer.queue.states import Status

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet

CLAIMS: dict[str, Callable[[MessageQuerySet, MessageQuerySet, int, dict[str, Any]], list[int]]] = {
    "postgresql": postgres.claim_ids,
    "sqlite": sqlite.claim_ids,
}


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
    due = queryset.due(now).in_send_order()
    vendor = connections[queryset.db].vendor
    claim_ids = CLAIMS.get(vendor, mysql.claim_ids)  # any database with SELECT ... FOR UPDATE
    ids = claim_ids(queryset, due, limit, claim)
    if not ids:
        return []
    mine = queryset.model.objects.using(queryset.db)
    # Rows over MAILER_MAX_MESSAGE_SIZE come without their data (rows.bounded).
    claimed = list(bounded(mine.filter(pk__in=ids).in_send_order(), settings.MAX_MESSAGE_SIZE))
    take_bounded(claimed)
    return claimed

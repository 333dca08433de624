"""Claiming due messages: one short statement or transaction per claim.

The statements are each database's own (``mailer.queue.sql``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from mailer.conf import settings
from mailer.queue import sql
from mailer.queue.rows import bounded, take_bounded
from mailer.queue.states import Status

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
    due = queryset.due(now).in_send_order()
    ids = sql.of(queryset.db).claim_ids(queryset, due, limit, claim)
    if not ids:
        return []
    mine = queryset.model.objects.using(queryset.db)
    # Rows over MAILER_MAX_MESSAGE_SIZE come without their data (rows.bounded).
    claimed = list(bounded(mine.filter(pk__in=ids).in_send_order(), settings.MAX_MESSAGE_SIZE))
    take_bounded(claimed)
    return claimed

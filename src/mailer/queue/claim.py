"""Claiming due messages: one short statement or transaction per claim.

The statements are each database's own (``mailer.queue.sql``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

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
    return _claimed(queryset, due, limit, claim)


def _claimed(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[Message]:
    """The claim's statements: where the database can, one that also returns the rows."""
    dialect = sql.of(queryset.db)
    # Rows over MAILER_MAX_MESSAGE_SIZE come without their data (rows.bounded).
    if dialect.claim_rows is not None:
        return dialect.claim_rows(queryset, due, limit, claim, settings.MAX_MESSAGE_SIZE)
    ids = dialect.claim_ids(queryset, due, limit, claim)
    if not ids:
        return []
    mine = queryset.model.objects.using(queryset.db)
    claimed = list(bounded(mine.filter(pk__in=ids).in_send_order(), settings.MAX_MESSAGE_SIZE))
    take_bounded(claimed)
    return claimed


def due_left(queryset: MessageQuerySet, at_most: int) -> int:
    """How many messages of ``queryset`` are due now, counted no further than ``at_most``:
    one short read of the index the claim uses, that says how near the queue's end is."""
    return queryset.due().values("pk")[:at_most].count()

"""PostgreSQL's own SQL for the queue: the claim, and the NOTIFY that wakes workers.

The claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING id``: concurrent workers never wait for each other nor get the same row.
``NOTIFY`` issued inside a transaction is delivered when it commits (and
dropped if it rolls back). Listening is the runner's (``mailer.runner.wakeup``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections

from mailer.conf import settings
from mailer.queue.sql.returning import update_returning

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet

CHANNEL = "mailer_queued"


def notify_channel(using: str) -> str:
    """The channel queueing mail NOTIFYs on database ``using`` (empty: none there).

    The INSERT that queues mail sends the NOTIFY itself (``mailer.queue.enqueue.insert_rows``).
    """
    if connections[using].vendor != "postgresql" or not settings.NOTIFY:
        return ""
    return CHANNEL


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows."""
    return update_returning(queryset, due, limit, claim, " FOR UPDATE SKIP LOCKED")

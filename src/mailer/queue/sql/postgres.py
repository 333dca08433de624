"""PostgreSQL's own SQL for the queue: the NOTIFY that wakes workers when mail is queued.

``NOTIFY`` issued inside a transaction is delivered when it commits (and
dropped if it rolls back). Listening is the runner's (``mailer.runner.wakeup``).
"""

from __future__ import annotations

from django.db import connections

from mailer.conf import settings

CHANNEL = "mailer_queued"


def notify_channel(using: str) -> str:
    """The channel queueing mail NOTIFYs on database ``using`` (empty: none there).

    The INSERT that queues mail sends the NOTIFY itself (``mailer.queue.enqueue.insert_rows``).
    """
    if connections[using].vendor != "postgresql" or not settings.NOTIFY:
        return ""
    return CHANNEL

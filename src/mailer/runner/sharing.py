"""A ``send_mail`` run over several delivery connections (``MAILER_SEND_CONCURRENCY``).

One connection takes turns with its server: while the server reads and
answers a message, the run waits, and while the run reads the next row and
renders it, the server waits. Several connections, each in a thread of its
own with its own database connection, keep both busy. The run shares the
due mail out as ``runmailer``'s delivery slots do: each connection claims
its own batches (first a share of one batch, then about half a second of
work), keeps its server connection open for all of them, and at the end of
the queue takes over half of what a sibling still holds (``mailer.delivery.pool``).
Claims, leases, the rate limit and the recording of results are those of a
single connection. One recorder writes the results of all of them, so the
crash window stays that of one worker (``mailer.delivery.recorder``): they are
the connections of one ``Delivery`` (``mailer.runner.send``), as a worker's
slots are.
``MAILER_EMAIL_MAX_BATCH`` and ``MAILER_EMAIL_MAX_DEFERRED`` count for the run
as a whole.

A run uses one connection when there is little due mail (fewer than
``MIN_SHARE`` messages per connection), with ``MAILER_EMAIL_THROTTLE`` (a
pause after each message on the one connection), and inside a transaction
of the caller's (the claimed rows are visible to that transaction only).
"""

from __future__ import annotations

from django.db import connections

from mailer.conf import settings
from mailer.queue.claim import due_left
from mailer.queue.message import MessageQuerySet

MIN_SHARE = 10  # due messages that make another connection worth opening


def connections_for(queue: MessageQuerySet, wanted: int | None = None) -> int:
    """How many delivery connections a run over ``queue`` uses now (one query at most)."""
    wanted = settings.SEND_CONCURRENCY if wanted is None else wanted
    if wanted <= 1 or settings.EMAIL_THROTTLE or connections[queue.db].in_atomic_block:
        return 1
    due = due_left(queue, wanted * MIN_SHARE)
    return max(1, min(wanted, due // MIN_SHARE))


__all__ = ["MIN_SHARE", "connections_for"]

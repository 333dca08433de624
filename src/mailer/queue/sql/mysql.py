"""MariaDB's and MySQL's own SQL for the queue: the claim, and the packet limit.

The claim picks rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them
in the same short transaction; so does any other database with
``SELECT ... FOR UPDATE``. InnoDB may still pick such a short transaction as the
victim of a deadlock (error 1213) when workers claim and record at once: it is
rolled back whole, so it is run again (:func:`retrying_deadlocks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import OperationalError, connections, transaction

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet

T = TypeVar("T")
DEADLOCK = 1213  # ER_LOCK_DEADLOCK: the server rolled the transaction back
DEADLOCK_ATTEMPTS = 3


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows."""
    features = connections[queryset.db].features

    def claim_once() -> list[int]:
        with transaction.atomic(using=queryset.db):
            picked = due.select_for_update(skip_locked=features.has_select_for_update_skip_locked)
            ids = list(picked.values_list("pk", flat=True)[:limit])
            if ids:
                queryset.model.objects.using(queryset.db).filter(pk__in=ids).update(**claim)
        return ids

    return retrying_deadlocks(queryset.db, claim_once)


def retrying_deadlocks(using: str, transaction_: Callable[[], T]) -> T:
    """Run ``transaction_`` (one short transaction of its own) again, up to
    ``DEADLOCK_ATTEMPTS`` times in all, while MariaDB or MySQL rolls it back as a
    deadlock's victim.

    Inside a transaction of the caller's nothing is retried: the server has
    rolled back the caller's work too, which only the caller can redo.
    """
    connection = connections[using]
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return transaction_()
        except OperationalError as error:
            retry = (
                connection.vendor == "mysql"
                and not connection.in_atomic_block
                and attempt < DEADLOCK_ATTEMPTS
                and bool(error.args)
                and error.args[0] == DEADLOCK
            )
            if not retry:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def max_allowed_packet(connection: Any) -> int:
    """The server's max_allowed_packet, asked once per connection.

    A statement longer than that makes the server drop the connection ("server
    has gone away") in the middle of the caller's request.
    """
    cached: int | None = getattr(connection, "_mailer_max_packet", None)
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            row = cursor.fetchone()
        cached = int(row[0])
        connection._mailer_max_packet = cached
    return cached

"""MariaDB's and MySQL's own SQL for the queue: the claim, and the packet limit.

The claim picks rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them
in the same short transaction; so does any other database with
``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows."""
    features = connections[queryset.db].features
    with transaction.atomic(using=queryset.db):
        picked = due.select_for_update(skip_locked=features.has_select_for_update_skip_locked)
        ids = list(picked.values_list("pk", flat=True)[:limit])
        if ids:
            queryset.model.objects.using(queryset.db).filter(pk__in=ids).update(**claim)
    return ids


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

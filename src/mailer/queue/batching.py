"""Deleting many rows a batch at a time, so that no statement runs for long."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet


def delete_in_batches(
    rows: QuerySet[Any], batch_size: int, before: Callable[[list[Any]], None] | None = None
) -> int:
    """Delete ``rows`` by batches of ``batch_size`` primary keys; return how many went.

    Each batch is one SELECT of keys and one DELETE, without signals or
    cascades (the queue's tables have neither); ``before(keys)`` deletes what
    refers to a batch first.
    """
    total = 0
    while True:
        batch = list(rows.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return total
        if before is not None:
            before(batch)
        total += rows.model.objects.using(rows.db).filter(pk__in=batch)._raw_delete(rows.db)

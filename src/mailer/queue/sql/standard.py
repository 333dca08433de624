"""The queue's SQL every database speaks: what a database's own module does not
change, and all of it for a database without a module of its own.

Each function here is also an attribute of ``postgres``, ``mysql`` and
``sqlite`` (their own version, or this one); ``mailer.queue.sql.of`` picks the
module for a database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from django.db import connections, models, transaction

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet

    # A column of an INSERT: its SQL, with None; or "", with the field bound per row.
    Column: TypeAlias = tuple[str, models.Field[Any, Any] | None]

T = TypeVar("T")

# The channel queueing mail NOTIFYs on, that idle workers LISTEN to (empty: workers poll).
CHANNEL = ""

# Does an INSERT that skips a taken idempotency key lock that key's row (MySQL's
# INSERT IGNORE does)? Then expired keys are deleted before inserting.
IGNORED_KEYS_LOCKED = False

# Does the database take one writer at a time (SQLite)? Then several worker processes
# would only queue for its write lock: ``runmailer`` keeps to one by default.
ONE_WRITER = False

# PostgreSQL's one statement that deletes messages and inserts their log rows
# (``mailer.queue.sql.postgres.insert_from_json``); None elsewhere.
insert_from_json = None

# The claim that reads the rows it claims in the same statement (``claim_ids`` and the
# rows, ``mailer.queue.sql.returning.rows_returning``); None: ids first, then a SELECT.
claim_rows = None


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows.

    ``SELECT ... FOR UPDATE`` (``SKIP LOCKED`` where the database has it) and an
    ``UPDATE``, in one short transaction.
    """
    skip_locked = connections[queryset.db].features.has_select_for_update_skip_locked
    with transaction.atomic(using=queryset.db):
        picked = due.select_for_update(skip_locked=skip_locked)
        ids = list(picked.values_list("pk", flat=True)[:limit])
        if ids:
            queryset.model.objects.using(queryset.db).filter(pk__in=ids).update(**claim)
    return ids


def retrying_deadlocks(using: str, transaction_: Callable[[], T]) -> T:
    """Run ``transaction_``, one short transaction of its own (MariaDB's runs it again
    when the server picks it as a deadlock's victim)."""
    return transaction_()


def any_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """A condition that ``column`` is one of ``values`` (not empty), with its parameters."""
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def shared_value_sql(field: models.Field[Any, Any], connection: Any) -> str | None:
    """SQL binding once a value every row of an INSERT shares (None: bound per row)."""
    return None


def insert_sql(
    connection: Any, head: str, columns: Sequence[Column], varying: int, tail: str, notify: str
) -> Callable[[int], str]:
    """An INSERT of a number of rows: ``head`` (``INSERT INTO t (columns) ``), one
    ``VALUES`` row per row (``columns``: SQL, or ``%s`` bound per row), ``tail``.

    ``varying`` is how many values each row binds; ``notify`` is PostgreSQL's.
    """
    row = "(" + ", ".join(sql if per_row is None else "%s" for sql, per_row in columns) + ")"
    return lambda count: f"{head}VALUES {', '.join([row] * count)}{tail}"


def max_params(connection: Any) -> int | None:
    """How many parameters one statement may have (None: no limit)."""
    limit = connection.features.max_query_params
    return int(limit) if limit else None


def max_packet(connection: Any) -> int | None:
    """How many bytes one statement may have (None: no limit that matters here)."""
    return None


def insert_ignoring() -> tuple[str, str]:
    """The SQL before ``table (columns) VALUES ...`` and after, for an INSERT that
    skips the rows whose unique key is taken."""
    return "INSERT INTO", " ON CONFLICT DO NOTHING"


def waiting_at_most(wrapper: Any, seconds: float) -> contextlib.AbstractContextManager[bool]:
    """Bound how long a statement of the block waits on ``wrapper``: True if that
    bounds it, False if a timer must interrupt it (:func:`interrupter`; here)."""
    return contextlib.nullcontext(False)


def interrupter(wrapper: Any) -> Callable[[], None] | None:
    """What interrupts the statement ``wrapper`` runs, from another thread, prepared
    in the thread that owns ``wrapper``.

    Here nothing can (None): the driver's own timeouts end a statement that hangs.
    """
    return None

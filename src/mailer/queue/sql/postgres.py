"""PostgreSQL's own SQL for the queue: the claim, the NOTIFY that wakes workers,
an INSERT that binds shared values once, and recording results in one statement.

The claim is one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING id``: concurrent workers never wait for each other nor get the same row.
``NOTIFY`` issued inside a transaction is delivered when it commits (and
dropped if it rolls back). Listening is the runner's (``mailer.runner.wakeup``).
The parameter and packet limits are ``mailer.queue.sql.standard``'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connections, models

from mailer.queue.sql.returning import rows_returning, update_returning

# The functions this database shares with every other (mailer.queue.sql.Dialect).
from mailer.queue.sql.standard import IGNORED_KEYS_LOCKED as IGNORED_KEYS_LOCKED
from mailer.queue.sql.standard import ONE_WRITER as ONE_WRITER
from mailer.queue.sql.standard import insert_ignoring as insert_ignoring
from mailer.queue.sql.standard import max_packet as max_packet
from mailer.queue.sql.standard import max_params as max_params
from mailer.queue.sql.standard import retrying_deadlocks as retrying_deadlocks
from mailer.queue.sql.standard import waiting_at_most as waiting_at_most

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet
    from mailer.queue.sql.standard import Column

# The INSERT that queues mail sends the NOTIFY itself (:func:`insert_sql`).
CHANNEL = "mailer_queued"


def interrupter(wrapper: Any) -> Callable[[], None]:
    """What interrupts the statement ``wrapper`` runs, from another thread: a cancel
    request (the driver's cancel is made to be called from any thread)."""

    def interrupt() -> None:
        if wrapper.connection is not None:
            wrapper.connection.cancel()

    return interrupt


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows."""
    return update_returning(queryset, due, limit, claim, " FOR UPDATE SKIP LOCKED")


def claim_rows(
    queryset: MessageQuerySet,
    due: MessageQuerySet,
    limit: int,
    claim: dict[str, Any],
    max_size: int | None,
) -> list[Message]:
    """``claim_ids``, and the rows claimed read in the same statement."""
    return rows_returning(queryset, due, limit, claim, " FOR UPDATE SKIP LOCKED", max_size)


def any_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``column`` is one of ``values``: one array parameter, not one per value (the
    driver would prepare each of thousands on its own)."""
    return f"{column} = ANY(%s)", [list(values)]


def shared_value_sql(field: models.Field[Any, Any], connection: Any) -> str | None:
    """A value every row of an INSERT shares (the queueing time) is bound once."""
    return f"CAST(%s AS {field.db_type(connection)})"


def insert_sql(
    connection: Any, head: str, columns: Sequence[Column], varying: int, tail: str, notify: str
) -> Callable[[int], str]:
    """``head`` ``SELECT <shared once> FROM (VALUES <varying per row>) AS v(c0, c1...)``
    ``tail``; every row alike: that many copies of the one row. ``notify``: a channel
    to NOTIFY from the same statement, so that queueing one message is one round trip.
    """
    select = []
    n = 0
    for sql, per_row in columns:
        if per_row is None:
            select.append(sql)
        else:
            select.append(f"CAST(v.c{n} AS {per_row.db_type(connection)})")
            n += 1
    if notify:
        # Identical notifications in one transaction reach listeners once.
        tail += f", pg_notify('{notify}', '')"
    head += f"SELECT {', '.join(select)} FROM "
    if not varying:
        return lambda count: f"{head}generate_series(1, {count}){tail}"
    row = "(" + ", ".join(["%s"] * varying) + ")"
    end = f") AS v({', '.join(f'c{i}' for i in range(varying))}){tail}"
    return lambda count: f"{head}(VALUES {', '.join([row] * count)}{end}"


def insert_from_json(
    connection: Any,
    fields: Sequence[models.Field[Any, Any]],
    document: str,
    delete: tuple[type[models.Model], Sequence[int]] | None,
) -> list[Any]:
    """INSERT the rows of ``document`` (a JSON array of objects by column) into the
    table of ``fields``, deleting the rows ``delete`` names in the same statement;
    the new ids. The statement's text never changes, and psycopg keeps it parsed.
    """
    model = fields[0].model
    gone = delete[0] if delete else None
    sql = _insert_from_json_sql(connection.alias, model, tuple(fields), gone)
    params: list[Any] = [list(delete[1])] if delete else []
    params.append(document)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [r[0] for r in cursor.fetchall()]


@functools.lru_cache(maxsize=64)
def _insert_from_json_sql(
    using: str,
    model: type[models.Model],
    fields: tuple[models.Field[Any, Any], ...],
    gone: type[models.Model] | None,
) -> str:
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    assert meta.pk is not None
    names = ", ".join(quote(str(f.column)) for f in fields)
    columns = ", ".join(f"{quote(str(f.column))} {f.db_type(connection)}" for f in fields)
    rows = f"jsonb_to_recordset(%s::jsonb) AS r({columns})"
    sql = f"INSERT INTO {quote(meta.db_table)} ({names}) SELECT {names} FROM {rows}"
    if gone is not None:
        gone_meta = gone._meta
        assert gone_meta.pk is not None
        sql = (
            f"WITH gone AS (DELETE FROM {quote(gone_meta.db_table)} "
            f"WHERE {quote(str(gone_meta.pk.column))} = ANY(%s)) {sql}"
        )
    return f"{sql} RETURNING {quote(str(meta.pk.column))}"

"""The claim as one ``UPDATE ... RETURNING``: PostgreSQL's, and SQLite's from 3.35."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet


def update_returning(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any], lock: str
) -> list[int]:
    """Claim in one ``UPDATE ... RETURNING`` statement; return the ids claimed.

    ``lock`` ends the subquery that picks the rows (``" FOR UPDATE SKIP LOCKED"``).
    """
    pk = connections[queryset.db].ops.quote_name(str(queryset.model._meta.pk.column))
    return [row[0] for row in _update(queryset, due, limit, claim, lock, pk, [])]


def rows_returning(
    queryset: MessageQuerySet,
    due: MessageQuerySet,
    limit: int,
    claim: dict[str, Any],
    lock: str,
    max_size: int | None,
) -> list[Message]:
    """Claim as ``update_returning`` does, and read the claimed rows from the same
    statement, in send order: one round trip, and no second query to build. As
    ``mailer.queue.rows.bounded`` reads them: ``message_data`` only where its length is
    within ``max_size`` (else None), that length in ``stored_size``."""
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    model = queryset.model
    fields = [f for f in model._meta.concrete_fields if f.name != "message_data"]
    data = quote(str(model._meta.get_field("message_data").column))
    returning = [quote(str(f.column)) for f in fields] + [f"LENGTH({data})", data]
    extra: list[Any] = []
    if max_size is not None:
        returning[-1] = f"CASE WHEN LENGTH({data}) <= %s THEN {data} ELSE NULL END"
        extra.append(max_size)
    columns = [f.get_col(model._meta.db_table) for f in fields]
    converters = [
        (column, connection.ops.get_db_converters(column) + f.get_db_converters(connection))
        for f, column in zip(fields, columns, strict=True)
    ]
    names = [f.attname for f in fields]
    claimed = []
    for *values, size, text in _update(
        queryset, due, limit, claim, lock, ", ".join(returning), extra
    ):
        for n, (column, convert) in enumerate(converters):
            for converter in convert:
                values[n] = converter(values[n], column, connection)
        message = model.from_db(queryset.db, names, values)
        message.message_data = text
        if max_size is not None:
            message.stored_size = size
        claimed.append(message)
    claimed.sort(key=lambda m: (m.priority, m.due_at, m.pk))  # in_send_order()
    return claimed


def _update(
    queryset: MessageQuerySet,
    due: MessageQuerySet,
    limit: int,
    claim: dict[str, Any],
    lock: str,
    returning: str,
    extra: list[Any],
) -> list[Any]:
    """Run the claim's ``UPDATE``, returning ``returning`` (its ``extra`` parameters last)."""
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    meta = queryset.model._meta
    picked_sql, picked_params = due.values("pk")[:limit].query.get_compiler(queryset.db).as_sql()
    columns = {field.name: str(field.column) for field in meta.concrete_fields}
    assignments = ", ".join(f"{quote(columns[name])} = %s" for name in claim)
    pk = quote(columns["id"])
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {pk} IN ({picked_sql}{lock}) RETURNING {returning}"
    )
    fields = {field.name: field for field in meta.concrete_fields}
    values = [fields[name].get_db_prep_save(v, connection) for name, v in claim.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *picked_params, *extra])
        return list(cursor.fetchall())

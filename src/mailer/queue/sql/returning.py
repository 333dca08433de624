"""The claim as one ``UPDATE ... RETURNING``: PostgreSQL's, and SQLite's from 3.35."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet


def update_returning(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any], lock: str
) -> list[int]:
    """Claim in one ``UPDATE ... RETURNING`` statement; return the ids claimed.

    ``lock`` ends the subquery that picks the rows (``" FOR UPDATE SKIP LOCKED"``).
    """
    connection = connections[queryset.db]
    quote = connection.ops.quote_name
    meta = queryset.model._meta
    picked_sql, picked_params = due.values("pk")[:limit].query.get_compiler(queryset.db).as_sql()
    columns = {field.name: str(field.column) for field in meta.concrete_fields}
    assignments = ", ".join(f"{quote(columns[name])} = %s" for name in claim)
    pk = quote(columns["id"])
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {pk} IN ({picked_sql}{lock}) RETURNING {pk}"
    )
    fields = {field.name: field for field in meta.concrete_fields}
    values = [fields[name].get_db_prep_save(v, connection) for name, v in claim.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *picked_params])
        return [row[0] for row in cursor.fetchall()]

"""PostgreSQL, with a flush that deletes rows instead of truncating tables.

A transactional test ends by flushing every table. Django's PostgreSQL backend does it
with one ``TRUNCATE`` of all of them, which gives each table new files on disk: about
0.2 s a test here, a third of the PostgreSQL run. A test leaves a few rows behind, and
deleting them takes a few milliseconds. Django's foreign keys on PostgreSQL are
deferred, and the flush runs in one transaction, so the order of the deletes does not
matter. Sequences are not reset, as with Django's own flush unless asked to.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(
        self,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        if reset_sequences or allow_cascade:
            return super().sql_flush(
                style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [
            f"{style.SQL_KEYWORD('DELETE')} {style.SQL_KEYWORD('FROM')} "
            f"{style.SQL_FIELD(self.quote_name(table))};"
            for table in tables
        ]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

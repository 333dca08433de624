"""SQLite, with the suite's quick flush."""

from __future__ import annotations

from django.db.backends.sqlite3 import base, operations

from ..flush import QuickFlush


class DatabaseOperations(QuickFlush, operations.DatabaseOperations):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

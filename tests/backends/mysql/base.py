"""MariaDB (Django's MySQL backend), with the suite's quick flush."""

from __future__ import annotations

from django.db.backends.mysql import base, operations

from ..flush import QuickFlush


class DatabaseOperations(QuickFlush, operations.DatabaseOperations):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

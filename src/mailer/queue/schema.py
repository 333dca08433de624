"""Whether the database holds the queue's tables as this version of mailer needs them.

Asked by the ``mailer.W050`` system check and by ``runmailer`` before it starts:
a project that has not run ``manage.py migrate`` is told so in one line.

Only mailer's own history is read: the names of its migration modules, and the rows
of the migration history table that are mailer's. Django's ``MigrationLoader`` would
import every app's migrations and build their graph first (tens of milliseconds of
a worker's start-up). mailer's migrations replace none (no squashed migration;
tests/test_first_run.py checks it), so a migration is applied exactly when the history
table names it.
"""

from __future__ import annotations

import importlib
import pkgutil

from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

APP_LABEL = "mailer"


def migration_names() -> list[str]:
    """The names of mailer's migrations, in order (none when ``MIGRATION_MODULES``
    turns them off)."""
    module_name, _ = MigrationLoader.migrations_module(APP_LABEL)
    if module_name is None:
        return []
    try:
        package = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return []
    path = getattr(package, "__path__", None)
    if path is None:  # a module, not a package: no migrations
        return []
    return sorted(
        name
        for _, name, is_package in pkgutil.iter_modules(path)
        if not is_package and name[0] not in "_~"
    )


def unapplied_migrations(using: str = "default") -> list[str]:
    """Names of mailer's migrations not applied to database ``using``, in order.

    Reads the migration history table (mailer's rows only); raises ``DatabaseError``
    if the database cannot be reached.
    """
    names = migration_names()
    if not names:
        return []
    recorder = MigrationRecorder(connections[using])
    if not recorder.has_table():
        return names
    applied = set(recorder.migration_qs.filter(app=APP_LABEL).values_list("name", flat=True))
    return [name for name in names if name not in applied]


def describe(unapplied: list[str]) -> str:
    """For example "3 migrations of mailer are not applied (0009_..., 0010_..., 0011_...)"."""
    count = len(unapplied)
    shown = ", ".join(unapplied[:3]) + (", ..." if count > 3 else "")
    verb = "migration of mailer is" if count == 1 else "migrations of mailer are"
    return f"{count} {verb} not applied ({shown})"


__all__ = ["describe", "migration_names", "unapplied_migrations"]

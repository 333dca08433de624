"""Whether the database holds the queue's tables as this version of mailer needs them.

Asked by the ``mailer.W050`` system check and by ``runmailer`` before it starts:
a project that has not run ``manage.py migrate`` is told so in one line.
"""

from __future__ import annotations

from django.db import connections
from django.db.migrations.loader import MigrationLoader

APP_LABEL = "mailer"


def unapplied_migrations(using: str = "default") -> list[str]:
    """Names of mailer's migrations not applied to database ``using``, in order.

    Reads the migration history table (one query); raises ``DatabaseError`` if
    the database cannot be reached.
    """
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    applied = loader.applied_migrations
    return sorted(
        name for app, name in loader.graph.nodes if app == APP_LABEL and (app, name) not in applied
    )


def describe(unapplied: list[str]) -> str:
    """For example "3 migrations of mailer are not applied (0009_..., 0010_..., 0011_...)"."""
    count = len(unapplied)
    shown = ", ".join(unapplied[:3]) + (", ..." if count > 3 else "")
    verb = "migration of mailer is" if count == 1 else "migrations of mailer are"
    return f"{count} {verb} not applied ({shown})"


__all__ = ["describe", "unapplied_migrations"]

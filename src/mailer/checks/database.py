"""The database check: mailer's migrations applied to each database it is given."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError, router

from mailer.queue.message import Message
from mailer.queue.schema import describe, unapplied_migrations


@register(Tags.database)
def check_migrations(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """mailer.W050: the queue's tables are missing or older than the code that uses them.

    A database check: Django runs it for the databases it is given (``manage.py
    check --database default``, ``migrate``, the test runner), never at import.
    A database that cannot be reached is left to the errors that will follow.
    """
    found: list[CheckMessage] = []
    for alias in databases or ():
        if not router.allow_migrate_model(alias, Message):
            continue
        try:
            unapplied = unapplied_migrations(alias)
        except DatabaseError:
            continue
        if unapplied:
            option = "" if alias == "default" else f" --database {alias}"
            found.append(
                Warning(
                    f"Database {alias!r}: {describe(unapplied)}; queueing or sending mail "
                    "fails until they are.",
                    hint=f"Run `python manage.py migrate{option}` (migrate itself shows this "
                    "once, just before it applies them).",
                    id="mailer.W050",
                    obj="mailer",
                )
            )
    return found

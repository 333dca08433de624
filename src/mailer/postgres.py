"""PostgreSQL wake-up: NOTIFY when mail is queued, LISTEN in idle workers.

``NOTIFY`` issued inside a transaction is delivered when it commits (and
dropped if it rolls back), so workers wake exactly when new mail becomes
visible -- no trigger, and no privilege beyond the connection's own.
"""

from __future__ import annotations

from django.db import connections

from .conf import settings

CHANNEL = "mailer_queued"


def notify_queued(using: str) -> None:
    """Tell listening workers that mail was queued (on commit of the caller's transaction)."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not settings.NOTIFY:
        return
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {CHANNEL}")

"""PostgreSQL wake-up: NOTIFY when mail is queued, LISTEN in idle workers.

``NOTIFY`` issued inside a transaction is delivered when it commits (and
dropped if it rolls back), so workers wake exactly when new mail becomes
visible -- no trigger, and no privilege beyond the connection's own.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from mailer.queue import sql
from mailer.queue.sql.postgres import CHANNEL

logger = logging.getLogger("mailer.worker")


def can_listen(using: str) -> bool:
    """Does queueing mail on ``using`` NOTIFY a channel (PostgreSQL), so workers can LISTEN?"""
    return bool(sql.of(using).CHANNEL)


class Listener(threading.Thread):
    """Calls ``wake()`` whenever a NOTIFY arrives on the queue's channel.

    Runs on its own database connection in autocommit mode. If the
    connection is lost it reconnects, calling ``wake()`` once in case a
    notification was missed meanwhile.
    """

    def __init__(self, using: str, wake: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name="mailer-listen", daemon=True)
        self.using = using
        self.wake = wake
        self.stop_event = stop
        self.listening = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._listen()
            except Exception as error:
                if self.stop_event.is_set():
                    break
                logger.warning("LISTEN connection lost (%s); reconnecting", error)
                self.listening.clear()
                self._close()
                self.wake()
                self.stop_event.wait(1.0)
        self._close()

    def _listen(self) -> None:
        connection = connections[self.using]
        connection.ensure_connection()
        raw: Any = connection.connection
        raw.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        self.listening.set()
        if hasattr(raw, "notifies"):  # psycopg 3
            while not self.stop_event.is_set():
                for _ in raw.notifies(timeout=0.5, stop_after=1):
                    self.wake()
        else:  # psycopg2
            while not self.stop_event.is_set():
                if select.select([raw], [], [], 0.5) != ([], [], []):
                    raw.poll()
                    if raw.notifies:
                        raw.notifies.clear()
                        self.wake()

    def _close(self) -> None:
        try:
            connections[self.using].close()
        except Exception:
            logger.debug("closing the LISTEN connection failed", exc_info=True)

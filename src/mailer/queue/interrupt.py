"""Interrupting a statement that does not come back.

``send_mail`` gives up on a database that stops answering within
``MAILER_RECORD_TIMEOUT``, also when the statement it waits for hangs (on a
lock held elsewhere, say). ``deadline`` bounds the statements this thread
runs in a block: on PostgreSQL, MySQL and MariaDB a timer interrupts the one
running when the time is up (a cancel request, or ``KILL QUERY`` over a second
connection); on SQLite, whose wait for another process's lock nothing
interrupts, the busy timeout is shortened for the block. Either way the
statement raises a ``DatabaseError`` like any other failure. Where the server cannot be reached
at all, the driver's own timeouts (connect and TCP keepalive settings) are
what ends a hung statement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

logger = logging.getLogger("mailer.engine")


@contextmanager
def deadline(using: str, seconds: float | None) -> Iterator[None]:
    """Interrupt what this thread runs on ``using`` if the block lasts over ``seconds``."""
    if seconds is None:
        yield
        return
    wrapper = connections[using]
    if wrapper.vendor == "sqlite":
        # Waiting for another process's write lock is SQLite's busy timeout, which no
        # interrupt ends: shorten it for the block instead.
        with wrapper.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            (before,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {max(int(seconds * 1000), 1)}")
        try:
            yield
        finally:
            with wrapper.cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {int(before)}")
        return
    timer = threading.Timer(max(seconds, 0.0), _interrupt, args=(wrapper,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _interrupt(wrapper: Any) -> None:
    raw = wrapper.connection
    if raw is None:
        return
    try:
        if wrapper.vendor == "postgresql":
            raw.cancel()
        elif wrapper.vendor == "mysql":
            other = connections.create_connection(wrapper.alias)
            try:
                with other.cursor() as cursor:
                    cursor.execute("KILL QUERY %s", [raw.thread_id()])
            finally:
                other.close()
    except Exception as error:  # the database may be beyond reach: nothing more to do
        logger.debug("could not interrupt a statement on %s: %s", wrapper.alias, error)


__all__ = ["deadline"]

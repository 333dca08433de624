"""Interrupting a statement that does not come back.

``send_mail`` gives up on a database that stops answering within
``MAILER_RECORD_TIMEOUT``, also when the statement it waits for hangs (on a
lock held elsewhere, say). ``deadline`` bounds the statements this thread runs
in a block, each database its own way (``mailer.queue.sql``): on PostgreSQL,
MySQL and MariaDB a timer interrupts the one running when the time is up (a
cancel request, or ``KILL QUERY`` over a second connection), and again each
second until the block ends; on SQLite, whose wait for another process's lock
nothing interrupts, the busy timeout is shortened for the block. Either way the
statement raises a ``DatabaseError`` like any other failure. Where the server
cannot be reached at all, the driver's own timeouts (connect and TCP keepalive
settings) are what ends a hung statement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connections

from mailer.queue import sql

logger = logging.getLogger("mailer.engine")


@contextmanager
def deadline(using: str, seconds: float | None) -> Iterator[None]:
    """Interrupt what this thread runs on ``using`` if the block lasts over ``seconds``."""
    if seconds is None:
        yield
        return
    wrapper = connections[using]
    dialect = sql.of(using)
    with dialect.waiting_at_most(wrapper, seconds) as bounded:
        interrupt = None if bounded else dialect.interrupter(wrapper)
        if interrupt is None:
            yield
            return
        over = threading.Event()
        watch = threading.Thread(
            target=_interrupt_until, args=(interrupt, using, seconds, over), daemon=True
        )
        watch.start()
        try:
            yield
        finally:
            over.set()


AGAIN = 1.0  # seconds between interrupts while the block goes on past its deadline


def _interrupt_until(
    interrupt: Callable[[], None], using: str, seconds: float, over: threading.Event
) -> None:
    """After ``seconds``, interrupt until the block is over: one interrupt may land
    between two statements of the block, where it ends neither."""
    if over.wait(max(seconds, 0.0)):
        return
    while True:
        try:
            interrupt()
        except Exception as error:  # the database may be beyond reach: nothing more to do
            logger.warning("could not interrupt a statement on %s: %s", using, error)
            return
        if over.wait(AGAIN):
            return


__all__ = ["deadline"]

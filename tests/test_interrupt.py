"""A statement that hangs on another process's lock is interrupted at its deadline.

``send_mail`` gives up on a database that stops answering because ``deadline``
interrupts the statement it waits for (``mailer.queue.interrupt``). On MariaDB
the interrupt is a ``KILL QUERY`` from a second connection, which needs the
first connection's id: read before the statement, since mysqlclient refuses
any other thread's call on a connection while a statement runs.
"""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, connections

from mailer.models import Message
from mailer.queue.interrupt import deadline

from . import processes
from .samples import batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_statement_waiting_for_a_lock_is_interrupted_at_its_deadline() -> None:
    Message.objects.enqueue(batch(2))
    raised: list[BaseException] = []

    def write_waiting_for_the_lock() -> None:
        try:
            with deadline(connection.alias, 0.5):
                Message.objects.update(retry_count=0)
        except BaseException as error:
            raised.append(error)
        finally:
            connections.close_all()

    with processes.queue_locked():
        waiter = threading.Thread(target=write_waiting_for_the_lock, daemon=True)
        waiter.start()
        waiter.join(20)
        hung = waiter.is_alive()
    waiter.join(20)  # the lock is gone: the statement ends either way
    assert not hung, "the statement was not interrupted"
    assert len(raised) == 1 and isinstance(raised[0], DatabaseError), raised

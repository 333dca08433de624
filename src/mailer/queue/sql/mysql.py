"""MariaDB's and MySQL's own SQL for the queue: the claim, and the packet limit.

The rest is ``mailer.queue.sql.standard``'s.

The claim picks rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them
in the same short transaction; so does any other database with
``SELECT ... FOR UPDATE``. InnoDB may still pick such a short transaction as the
victim of a deadlock (error 1213) when workers claim and record at once: it is
rolled back whole, so it is run again (:func:`retrying_deadlocks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import OperationalError, connections

from mailer.queue.sql import standard

# The functions this database shares with every other (mailer.queue.sql.Dialect).
from mailer.queue.sql.standard import CHANNEL as CHANNEL
from mailer.queue.sql.standard import ONE_WRITER as ONE_WRITER
from mailer.queue.sql.standard import any_of as any_of
from mailer.queue.sql.standard import claim_rows as claim_rows
from mailer.queue.sql.standard import insert_from_json as insert_from_json
from mailer.queue.sql.standard import insert_sql as insert_sql
from mailer.queue.sql.standard import max_params as max_params
from mailer.queue.sql.standard import shared_value_sql as shared_value_sql
from mailer.queue.sql.standard import waiting_at_most as waiting_at_most

if TYPE_CHECKING:
    from mailer.queue.message import MessageQuerySet

T = TypeVar("T")
DEADLOCK = 1213  # ER_LOCK_DEADLOCK: the server rolled the transaction back
DEADLOCK_ATTEMPTS = 3

# InnoDB's INSERT IGNORE leaves a shared lock on a key it finds taken: deleting
# that row next would need an exclusive lock, and two callers doing so would
# deadlock. So expired keys are deleted before the INSERT (mailer.queue.idempotency).
IGNORED_KEYS_LOCKED = True


def claim_ids(
    queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
) -> list[int]:
    """Mark up to ``limit`` rows of ``due`` with ``claim``; the ids, skipping locked rows."""
    return retrying_deadlocks(queryset.db, lambda: standard.claim_ids(queryset, due, limit, claim))


def retrying_deadlocks(using: str, transaction_: Callable[[], T]) -> T:
    """Run ``transaction_`` (one short transaction of its own) again, up to
    ``DEADLOCK_ATTEMPTS`` times in all, while MariaDB or MySQL rolls it back as a
    deadlock's victim.

    Inside a transaction of the caller's nothing is retried: the server has
    rolled back the caller's work too, which only the caller can redo.
    """
    connection = connections[using]
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return transaction_()
        except OperationalError as error:
            retry = (
                not connection.in_atomic_block
                and attempt < DEADLOCK_ATTEMPTS
                and bool(error.args)
                and error.args[0] == DEADLOCK
            )
            if not retry:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def insert_ignoring() -> tuple[str, str]:
    """The SQL before ``table (columns) VALUES ...`` and after, for an INSERT that
    skips the rows whose unique key is taken."""
    return "INSERT IGNORE INTO", ""


def interrupter(wrapper: Any) -> Callable[[], None]:
    """What interrupts the statement ``wrapper`` runs, from another thread: ``KILL
    QUERY`` over a second connection.

    The server's id of ``wrapper``'s connection is read here, in the thread that owns
    it: mysqlclient refuses to be asked while another thread's statement runs on it.
    """
    wrapper.ensure_connection()
    thread_id = wrapper.connection.thread_id()

    def interrupt() -> None:
        other = connections.create_connection(wrapper.alias)
        try:
            with other.cursor() as cursor:
                cursor.execute("KILL QUERY %s", [thread_id])
        finally:
            other.close()

    return interrupt


def max_packet(connection: Any) -> int:
    """The server's max_allowed_packet, asked once per connection.

    A statement longer than that makes the server drop the connection ("server
    has gone away") in the middle of the caller's request.
    """
    cached: int | None = getattr(connection, "_mailer_max_packet", None)
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            row = cursor.fetchone()
        cached = int(row[0])
        connection._mailer_max_packet = cached
    return cached

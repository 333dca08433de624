"""A short queue transaction that MariaDB rolls back as a deadlock's victim is run again.

The deadlocks here are real: two connections lock two queued rows in opposite
orders, and InnoDB rolls back the transaction that changed fewer rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import OperationalError, connection, transaction

from mailer.models import Message
from mailer.queue.sql.mysql import DEADLOCK, retrying_deadlocks

from .samples import batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.mariadb_only]

WAIT = 30  # seconds: a deadlock is detected at once; this only bounds a broken test


def lock(pk: int) -> None:
    Message.objects.select_for_update().filter(pk=pk).values_list("pk").get()


class Rival(threading.Thread):
    """On its own connection: lock ``first``, change a row (so that InnoDB picks the
    other side as the victim), wait until told, then lock ``second`` and commit."""

    def __init__(self, first: int, second: int, heavy: int) -> None:
        super().__init__(daemon=True)
        self.first, self.second, self.heavy = first, second, heavy
        self.holding = threading.Event()
        self.go = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                lock(self.first)
                Message.objects.filter(pk=self.heavy).update(retry_count=7)
                self.holding.set()
                assert self.go.wait(WAIT)
                lock(self.second)
        except BaseException as error:
            self.error = error
        finally:
            connection.close()


def crossing(rival: Rival, mine: int, theirs: int) -> tuple[Callable[[], str], list[int]]:
    """A transaction that locks ``mine``, lets the rival go, then locks ``theirs``."""
    runs: list[int] = []

    def locks_both() -> str:
        runs.append(len(runs) + 1)
        with transaction.atomic():
            lock(mine)
            rival.go.set()
            lock(theirs)
        return "committed"

    return locks_both, runs


def test_a_deadlock_victim_is_run_again_and_commits() -> None:
    first, second, heavy = (m.pk for m in Message.objects.enqueue(batch(3)))
    rival = Rival(first, second, heavy)
    rival.start()
    assert rival.holding.wait(WAIT)
    locks_both, runs = crossing(rival, second, first)

    assert retrying_deadlocks(connection.alias, locks_both) == "committed"

    rival.join(WAIT)
    assert rival.error is None, "the rival, which changed a row, is not the victim"
    assert runs == [1, 2], "rolled back once as the victim, committed the second time"
    assert Message.objects.get(pk=heavy).retry_count == 7


def test_inside_the_callers_transaction_a_deadlock_is_the_callers() -> None:
    first, second, heavy = (m.pk for m in Message.objects.enqueue(batch(3)))
    rival = Rival(first, second, heavy)
    rival.start()
    assert rival.holding.wait(WAIT)
    locks_both, runs = crossing(rival, second, first)

    with pytest.raises(OperationalError) as raised, transaction.atomic():
        retrying_deadlocks(connection.alias, locks_both)

    rival.join(WAIT)
    assert raised.value.args[0] == DEADLOCK
    assert runs == [1], "the server rolled back the caller's work too: not retried here"

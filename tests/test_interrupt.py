"""A statement that waits on a lock held elsewhere is ended when its deadline passes.

``send_mail`` and the Tasks drain give up on a database that stops answering;
they can only do so if the statement they are blocked in comes back. Here another
process holds a lock on the queue (as in ``tests/test_crash.py``) while this
thread claims mail under :func:`mailer.queue.interrupt.deadline`.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import DatabaseError, connections

from mailer.models import Message
from mailer.queue.interrupt import deadline

from . import processes
from .samples import batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIMIT = 1.0  # seconds the claim may wait
ROOM = 15.0  # a busy machine's margin on top; a statement nothing ends waits forever


def claim_under_deadline(idle_first: float = 0.0) -> float:
    """Claim under a deadline, in a thread of its own as each delivery connection
    has; how long it took to fail. A claim that never comes back fails the test
    (when the lock is given up) instead of hanging it. ``idle_first``: seconds the
    block spends outside any statement before it claims."""
    took: list[float] = []
    errors: list[BaseException] = []

    def claim() -> None:
        started = time.monotonic()
        try:
            with deadline("default", LIMIT):
                time.sleep(idle_first)
                Message.objects.claim("worker-under-deadline", 10, lease=60)
        except DatabaseError:
            took.append(time.monotonic() - started)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=claim, daemon=True)
    with processes.queue_locked():
        thread.start()
        thread.join(LIMIT + ROOM)
        came_back = not thread.is_alive()
    thread.join(60)
    assert came_back, "the claim waited for the lock past its deadline"
    assert not errors, errors
    assert took, "the claim went through while the queue was locked"
    return took[0]


class TestDeadline:
    def test_a_claim_blocked_by_a_lock_held_elsewhere_fails_after_the_deadline(self) -> None:
        Message.objects.enqueue(batch(3))
        took = claim_under_deadline()
        assert took >= LIMIT * 0.9, f"interrupted after {took:.2f} s, before its deadline"
        assert Message.objects.filter(claimed_by="worker-under-deadline").count() == 0

    def test_a_statement_started_after_the_deadline_is_interrupted_too(self) -> None:
        """The first interrupt finds no statement running (it ends nothing); the
        claim that follows is interrupted all the same."""
        Message.objects.enqueue(batch(3))
        claim_under_deadline(idle_first=LIMIT + 0.5)
        assert Message.objects.filter(claimed_by="worker-under-deadline").count() == 0

    def test_a_statement_that_finishes_in_time_is_not_interrupted(self) -> None:
        Message.objects.enqueue(batch(3))
        with deadline("default", LIMIT):
            claimed = Message.objects.claim("worker-in-time", 10, lease=60)
        assert len(claimed) == 3
        assert Message.objects.filter(claimed_by="worker-in-time").count() == 3

"""The recorder gives up: every error names every accepted message it could not record;
and a write tried again after a lost answer applies nothing twice, and leaves nothing out.

A ``send_mail`` run's connections and the pool's thread claiming ahead share one
recorder; whichever gives up first, the run's error lists them all (once), as the log
does.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError
from django.utils import timezone

import mailer
from mailer.delivery.recorder import Recorder
from mailer.exceptions import DatabaseUnreachable
from mailer.models import Message, MessageLog, Status
from mailer.outcome import Outcome, Reply, Verdict
from mailer.queue.message import MessageQuerySet

pytestmark = pytest.mark.django_db


def accepted(recorder: Recorder, count: int) -> list[tuple[int, str]]:
    """Queue ``count`` messages and hand the recorder an accepted result for each."""
    for n in range(count):
        mailer.send_mail(f"Receipt {n}", "Thanks.", "shop@example.com", [f"c{n}@example.com"])
    named = []
    for message in Message.objects.order_by("pk"):
        message_id = f"<{message.pk}@example.com>"
        recorder.add(message, Outcome(Verdict.SENT, Reply(250, "OK"), message_id=message_id))
        named.append((message.pk, message_id))
    return named


def test_each_thread_that_gives_up_names_every_unrecorded_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(Message, "default", "vm:1:2", background=False)
    named = accepted(recorder, 2)
    with caplog.at_level(logging.ERROR, logger="mailer"):
        first = recorder.abandon("database is locked")  # the pool's thread, claiming ahead
        second = recorder.abandon("database is locked")  # a connection, at its final "."
    assert first == second == named
    assert sum("gave up recording 2" in r.getMessage() for r in caplog.records) == 1


def test_a_run_whose_connections_all_gave_up_names_each_message_once() -> None:
    named = [(1, "<1@example.com>"), (2, "<2@example.com>")]
    raised = [
        DatabaseUnreachable("database is locked", named),
        DatabaseUnreachable("database is locked", named[::-1]),
        DatabaseUnreachable("database is locked", []),
    ]
    error = DatabaseUnreachable.of_all(raised)
    assert error.unrecorded == named
    assert "2 accepted messages could not be recorded" in str(error)


def _record_through_a_recorder(message: Message) -> None:
    """Hand a recorder a deferral of ``message`` and wait until it is written."""
    recorder = Recorder(Message, "default", "vm:1:2")
    try:
        recorder.add(
            message,
            Outcome(Verdict.TRANSIENT, Reply(451, "4.3.0 try again later")),
            "vm:1:2/0",
            admitted=False,
        )
        recorder.flush(give_up_after=30)
    finally:
        recorder.close()


@pytest.mark.django_db(transaction=True)
def test_a_write_whose_answer_was_lost_is_not_applied_again_to_a_message_claimed_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A deferral commits and its answer is lost (the connection cut after COMMIT); the
    # database stays away until the message is due again, and another worker claims it
    # first. The write tried again leaves it alone: applied again, it would queue the
    # message from under that worker, which is sending it, and count the attempt twice.
    mailer.send_mail("Receipt", "Thanks.", "shop@example.com", ["c@example.com"])
    (message,) = Message.objects.claim("vm:1:2/0", 1, lease=60)
    record = MessageQuerySet.record
    calls: list[int] = []

    def answer_lost_once(queryset: MessageQuerySet, *args: Any, **kwargs: Any) -> None:
        record(queryset, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            Message.objects.filter(pk=message.pk).update(due_at=timezone.now())
            assert Message.objects.claim("vm:9:9/0", 1, lease=60)
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(MessageQuerySet, "record", answer_lost_once)
    _record_through_a_recorder(message)
    row = Message.objects.get(pk=message.pk)
    assert (row.status, row.claimed_by, row.retry_count) == (Status.CLAIMED, "vm:9:9/0", 1)
    assert MessageLog.objects.count() == 1


def _deferred_by_an_error_handler() -> Message:
    """A claimed message a django-mailer style error handler deferred (saved at once)."""
    mailer.send_mail("Receipt", "Thanks.", "shop@example.com", ["c@example.com"])
    (message,) = Message.objects.claim("vm:1:2/0", 1, lease=60)
    message.defer("451 4.3.0 try again later")
    return message


def _record_failing_once(monkeypatch: pytest.MonkeyPatch, *, committed: bool) -> None:
    """The first write fails: before its COMMIT, or (``committed``) with its answer lost."""
    record = MessageQuerySet.record
    calls: list[int] = []

    def failing_once(queryset: MessageQuerySet, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1 or committed:
            record(queryset, *args, **kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(MessageQuerySet, "record", failing_once)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("committed", [False, True], ids=["failed", "answer-lost"])
def test_a_write_tried_again_logs_an_attempt_an_error_handler_deferred_once(
    monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    # The handler's defer() saved the message (deferred, no claim): only its log row is
    # left to write. Tried again, the write finds no claim to match; the attempt is
    # logged all the same, and once, whether or not the failed write had committed.
    message = _deferred_by_an_error_handler()
    _record_failing_once(monkeypatch, committed=committed)
    _record_through_a_recorder(message)
    row = Message.objects.get(pk=message.pk)
    assert (row.status, row.claimed_by, row.retry_count) == (Status.DEFERRED, "", 1)
    logged = MessageLog.objects.filter(queue_id=message.pk)
    assert list(logged.values_list("attempt", flat=True)) == [1]

"""The recorder gives up: every error names every accepted message it could not record.

A ``send_mail`` run's connections and the pool's thread claiming ahead share one
recorder; whichever gives up first, the run's error lists them all (once), as the log
does.
"""

from __future__ import annotations

import logging

import pytest

import mailer
from mailer.delivery.recorder import Recorder
from mailer.exceptions import DatabaseUnreachable
from mailer.models import Message
from mailer.outcome import Outcome, Reply, Verdict

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

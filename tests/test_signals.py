"""Signals: sent once the change is committed, with the message and what the server said."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail as django_mail
from django.db import connections, transaction
from django.utils import timezone

from mailer import signals
from mailer.engine import SendCounts, send_all
from mailer.models import RESULT_FAILURE, RESULT_SUCCESS, DontSendEntry, Message, Status
from mailer.outcome import Outcome, Reply, Verdict
from mailer.queue.log import MessageLog

from .assertions import MailAssertions
from .samples import plain, token_of

pytestmark = pytest.mark.django_db(transaction=True)

# Log fields that do not depend on which message it was.
SAME_FOR_EVERY_MESSAGE = (
    "priority",
    "result",
    "attempt",
    "refused",
    "exception",
    "smtp_code",
    "mailer",
    "idempotency_key",
)
NAMES = ("message_queued", "batch_queued", "message_sent", "message_deferred", "message_failed")


class Rollback(Exception):
    pass


@pytest.fixture
def received() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """What each signal's receiver got: one dict of arguments per call."""
    calls: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    for name in NAMES:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            calls[_name].append({"sender": sender, **kwargs})

        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"test:{name}")
    yield calls
    for name in NAMES:
        getattr(signals, name).disconnect(dispatch_uid=f"test:{name}")


@pytest.fixture
def raising() -> Iterator[None]:
    """A receiver of every signal that raises."""

    def receiver(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver is broken")

    for name in NAMES:
        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"test-raising:{name}")
    yield
    for name in NAMES:
        getattr(signals, name).disconnect(dispatch_uid=f"test-raising:{name}")


@pytest.fixture
def other() -> Iterator[str]:
    """A second alias for the test database, with a connection of its own.

    Added for this test only (a DATABASES entry would be seen by every test). Django's
    test case refuses aliases it was not told about when they first connect, so the
    connection is opened here.
    """
    connections.settings["other"] = {**connections["default"].settings_dict}
    try:
        connections["other"].connect()
        yield "other"
    finally:
        connections["other"].close()
        del connections["other"]
        del connections.settings["other"]


class TestQueued:
    def test_each_message_is_signalled_once_the_transaction_commits(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        with transaction.atomic():
            rows = Message.objects.enqueue([plain(), plain(), plain()])
            assert received["message_queued"] == [], "sent before the commit"
            assert received["batch_queued"] == []
        calls = received["message_queued"]
        assert [c["message"].pk for c in calls] == [r.pk for r in rows]
        assert all(c["sender"] is Message and c["using"] == "default" for c in calls)
        (batch,) = received["batch_queued"]
        assert [m.pk for m in batch["messages"]] == [r.pk for r in rows]

    def test_nothing_is_signalled_when_the_transaction_rolls_back(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        with pytest.raises(Rollback), transaction.atomic():
            Message.objects.enqueue([plain()])
            raise Rollback
        assert not Message.objects.exists()
        assert received["message_queued"] == []
        assert received["batch_queued"] == []

    def test_a_rolled_back_savepoint_signals_only_what_was_kept(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        kept, dropped = plain(), plain()
        with transaction.atomic():
            Message.objects.enqueue([kept])
            with pytest.raises(Rollback), transaction.atomic():
                Message.objects.enqueue([dropped])
                raise Rollback
        assert [token_of(c["message"].email) for c in received["message_queued"]] == [
            token_of(kept)
        ]

    def test_without_a_transaction_it_is_signalled_at_once(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        django_mail.send_mail("Hi", "Body", "a@example.com", ["b@example.com"])
        (call,) = received["message_queued"]
        assert call["message"].status == Status.QUEUED
        assert call["message"].to_addresses == ["b@example.com"]

    def test_mail_the_dont_send_list_empties_is_not_signalled(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        DontSendEntry.objects.create(to_address="alice@example.com")
        assert Message.objects.enqueue([plain()]) == []
        assert received["message_queued"] == []
        assert received["batch_queued"] == []

    def test_it_follows_the_transaction_of_the_database_the_mail_went_to(
        self, received: dict[str, list[dict[str, Any]]], other: str
    ) -> None:
        with transaction.atomic(using=other):
            Message.objects.using(other).enqueue([plain()])
            assert received["message_queued"] == [], "sent before 'other' committed"
        (call,) = received["message_queued"]
        assert call["using"] == other

    def test_a_receiver_that_raises_is_logged_and_breaks_nothing(
        self, raising: None, received: dict[str, list[dict[str, Any]]], caplog: Any
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="mailer.signals"), transaction.atomic():
            (row,) = Message.objects.enqueue([plain()])
        assert Message.objects.filter(pk=row.pk).exists()
        assert len(received["message_queued"]) == 1, "the other receivers still run"
        assert "message_queued receiver" in caplog.text
        assert f"for message {row.pk}" in caplog.text


class TestDelivered(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_sent_deferred_and_failed_come_with_the_servers_reply(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        good, busy, spam = plain(), plain(), plain()
        rows = {
            token_of(m): r
            for m, r in zip(
                (good, busy, spam), Message.objects.enqueue([good, busy, spam]), strict=True
            )
        }
        self.server.faults.transient_first = 1
        self.server.faults.transient_match = token_of(busy).encode()
        self.server.faults.refuse_data = {token_of(spam).encode(): "554 5.7.1 Spam detected"}
        assert send_all() == SendCounts(sent=1, deferred=1, failed=1)

        (sent,) = received["message_sent"]
        assert sent["message"].pk == rows[token_of(good)].pk
        assert sent["outcome"].verdict is Verdict.SENT
        assert sent["outcome"].reply.code == 250
        assert sent["log"].pk is not None and sent["log"].result == RESULT_SUCCESS
        assert sent["log"].smtp_code == 250
        self.assert_delivered_once(good)

        (deferred,) = received["message_deferred"]
        assert deferred["message"].pk == rows[token_of(busy)].pk
        assert deferred["outcome"].reply == Reply(451, "4.3.0 Try again later")
        assert deferred["message"].due_at > timezone.now()
        assert deferred["log"].result == RESULT_FAILURE and deferred["log"].smtp_code == 451

        (failed,) = received["message_failed"]
        assert failed["message"].pk == rows[token_of(spam)].pk
        assert failed["outcome"].reply == Reply(554, "5.7.1 Spam detected")
        assert failed["message"].status == Status.FAILED
        assert failed["log"].smtp_code == 554
        for call in (sent, deferred, failed):
            assert call["sender"] is Message and call["using"] == "default"

    def test_the_log_rows_are_the_same_with_receivers_or_without(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        # Without receivers, recording writes the rows from their values (no instances,
        # no ids asked back); with them, it makes the rows it signals. Both write the same.
        def attempts() -> list[dict[str, Any]]:
            good, busy = plain(), plain()
            Message.objects.enqueue([good, busy])
            self.server.faults.transient_first = 1
            self.server.faults.transient_match = token_of(busy).encode()
            assert send_all() == SendCounts(sent=1, deferred=1)
            rows = MessageLog.objects.order_by("pk")
            found = [
                {
                    "kept": row.message_data is not None,
                    "subject": row.subject_line.split(" tok-")[0],
                    "text": row.log_message.split(" until ")[0],
                    "recipients": [[r[0].split("@")[1], *r[1:3]] for r in row.recipients],
                    "worker": bool(row.worker) and row.worker.count(":") == 2,
                    "message_id": bool(row.message_id),
                    **{name: getattr(row, name) for name in SAME_FOR_EVERY_MESSAGE},
                }
                for row in rows
            ]
            rows.delete()
            Message.objects.all().delete()
            return found

        with_receivers = attempts()
        assert [call["log"].pk for call in received["message_sent"]] != [None]
        for name in NAMES:
            getattr(signals, name).disconnect(dispatch_uid=f"test:{name}")
        assert not signals.result_listeners(Message)
        without = attempts()
        assert without == with_receivers
        assert [row["result"] for row in without] == [RESULT_SUCCESS, RESULT_FAILURE]

    def test_receivers_run_after_the_result_is_committed(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        seen: list[bool] = []

        def receiver(sender: Any, message: Message, **kwargs: Any) -> None:
            seen.append(Message.objects.filter(pk=message.pk).exists())

        signals.message_sent.connect(receiver, weak=False, dispatch_uid="test:seen")
        try:
            Message.objects.enqueue([plain()])
            send_all()
        finally:
            signals.message_sent.disconnect(dispatch_uid="test:seen")
        assert seen == [False], "the sent message is already gone from the queue"

    def test_nothing_is_signalled_when_recording_rolls_back(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        (row,) = Message.objects.enqueue([plain()])
        outcome = Outcome(Verdict.SENT, Reply(250, "OK"))
        with pytest.raises(Rollback), transaction.atomic():
            Message.objects.record([(row, outcome)])
            raise Rollback
        assert received["message_sent"] == []
        assert Message.objects.filter(pk=row.pk).exists()

    def test_a_receiver_that_raises_does_not_break_delivery(
        self, raising: None, received: dict[str, list[dict[str, Any]]], caplog: Any
    ) -> None:
        messages = [plain(), plain()]
        Message.objects.enqueue(messages)
        with caplog.at_level(logging.WARNING, logger="mailer.signals"):
            assert send_all() == SendCounts(sent=2)
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()
        assert len(received["message_sent"]) == 2
        assert caplog.text.count("message_sent receiver") == 2

    def test_a_message_the_dont_send_list_stops_at_delivery_is_not_signalled(
        self, received: dict[str, list[dict[str, Any]]]
    ) -> None:
        Message.objects.enqueue([plain()])
        DontSendEntry.objects.create(to_address="alice@example.com")
        assert send_all() == SendCounts()
        assert not Message.objects.exists()
        for name in ("message_sent", "message_deferred", "message_failed"):
            assert received[name] == [], name

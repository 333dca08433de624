"""Retry now, requeue, cancel and copy: what they change, what they leave alone, what they say."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from mailer.engine import send_all
from mailer.models import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    RESULT_DONT_SEND,
    RESULT_SUCCESS,
    DontSendEntry,
    Message,
    MessageLog,
    Status,
)
from mailer.queue import operations

from .samples import html, plain

pytestmark = pytest.mark.django_db

HOUR = datetime.timedelta(hours=1)


def queued(state: str, **changes: Any) -> Message:
    """A message queued normally, then put in ``state`` as the engine would leave it."""
    (message,) = Message.objects.enqueue([plain(["alice@example.com", "bob@example.com"])])
    now = timezone.now()
    fields: dict[str, Any] = {
        "due": {},
        "scheduled": {"due_at": now + HOUR},
        "sending": {"status": Status.CLAIMED, "claimed_by": "h:1:1/0", "due_at": None},
        "deferred": {"status": Status.DEFERRED, "due_at": now + HOUR, "retry_count": 1},
        "held": {"status": Status.DEFERRED, "due_at": None},
        "failed": {"status": Status.FAILED, "due_at": None, "retry_count": 3},
    }[state]
    fields.update(changes)
    Message.objects.filter(pk=message.pk).update(**fields)
    message.refresh_from_db()
    return message


def states() -> dict[str, int]:
    return {m.state: m.pk for m in Message.objects.all()}


def test_retry_now_makes_waiting_mail_due_and_says_what_it_skipped() -> None:
    rows = {state: queued(state) for state in ("scheduled", "deferred", "held")}
    rows["due"] = queued("due")
    rows["sending"] = queued("sending")
    rows["failed"] = queued("failed")
    before = timezone.now()

    report = operations.retry_now(Message.objects.all())

    assert str(report) == (
        "3 messages retried, 1 skipped because it was already due, "
        "1 skipped because it was being sent, "
        "1 skipped because it had failed (use “Requeue failed messages”)."
    )
    for state in ("scheduled", "deferred", "held"):
        row = Message.objects.get(pk=rows[state].pk)
        assert row.status == Status.QUEUED
        assert row.due_at is not None and before <= row.due_at <= timezone.now()
        assert row.retry_count == rows[state].retry_count
    assert Message.objects.get(pk=rows["sending"].pk).status == Status.CLAIMED
    assert Message.objects.get(pk=rows["failed"].pk).status == Status.FAILED
    assert Message.objects.due().count() == 4


def test_retry_now_keeps_priority() -> None:
    row = queued("held", priority=PRIORITY_LOW)
    operations.retry_now(Message.objects.filter(pk=row.pk))
    assert Message.objects.get(pk=row.pk).priority == PRIORITY_LOW


def test_a_row_claimed_between_reading_and_writing_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [queued("deferred"), queued("deferred")]
    real = operations._chunks

    def worker_claims_first(*args: Any) -> Any:
        for page in real(*args):
            Message.objects.filter(pk=rows[0].pk).update(status=Status.CLAIMED, claimed_by="w")
            yield page

    monkeypatch.setattr(operations, "_chunks", worker_claims_first)
    report = operations.retry_now(Message.objects.all())
    assert str(report) == "1 message retried, 1 skipped because a worker sent or took it meanwhile."
    assert Message.objects.get(pk=rows[0].pk).claimed_by == "w"


def test_large_selections_are_processed_in_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operations, "CHUNK", 2)
    for _ in range(5):
        queued("held")
    report = operations.retry_now(Message.objects.all())
    assert report.done == 5
    assert Message.objects.held().count() == 0


def test_requeue_failed_retries_only_the_recipients_that_refused() -> None:
    row = queued(
        "failed",
        recipient_results={
            "alice@example.com": ["sent", 250, "ok"],
            "bob@example.com": ["permanent", 550, "no such user"],
        },
        last_code=550,
        last_reply="no such user",
    )
    other = queued("deferred")
    report = operations.requeue_failed(Message.objects.all())
    assert str(report) == "1 message requeued, 1 skipped because it had not failed."
    row.refresh_from_db()
    assert row.status == Status.QUEUED
    assert row.due_at is not None and row.due_at <= timezone.now()
    assert row.claimed_by == ""
    assert row.lease_expires_at is None
    assert row.recipient_results == {"alice@example.com": ["sent", 250, "ok"]}
    assert row.retry_count == 3  # attempts keep counting
    assert Message.objects.get(pk=other.pk).status == Status.DEFERRED


def test_requeue_leaves_expired_mail_failed() -> None:
    row = queued("failed", expires_at=timezone.now() - HOUR)
    report = operations.requeue_failed(Message.objects.all())
    assert str(report) == "0 messages requeued, 1 skipped because it had expired."
    assert Message.objects.get(pk=row.pk).status == Status.FAILED


@pytest.mark.django_db(transaction=True)
def test_requeued_mail_is_delivered_to_the_remaining_recipient(smtp: Any) -> None:
    row = queued(
        "failed",
        recipient_results={
            "alice@example.com": ["sent", 250, "ok"],
            "bob@example.com": ["permanent", 550, "no such user"],
        },
    )
    operations.requeue_failed(Message.objects.filter(pk=row.pk))
    assert send_all().sent == 1
    (received,) = smtp.received
    assert received.rcpt_tos == ["bob@example.com"]


def test_cancel_removes_mail_and_logs_who_did_it() -> None:
    rows = {state: queued(state) for state in ("due", "scheduled", "held", "failed")}
    sending = queued("sending")
    rows["due"].recipient_results = {"alice@example.com": ["sent", 250, "ok"]}
    Message.objects.filter(pk=rows["due"].pk).update(
        recipient_results=rows["due"].recipient_results
    )

    report = operations.cancel(Message.objects.all(), by="ops")

    assert str(report) == "4 messages cancelled, 1 skipped because it was being sent."
    assert list(Message.objects.values_list("pk", flat=True)) == [sending.pk]
    logs = {log.queue_id: log for log in MessageLog.objects.all()}
    assert set(logs) == {row.pk for row in rows.values()}
    for state, row in rows.items():
        log = logs[row.pk]
        assert log.result == RESULT_DONT_SEND
        assert log.log_message == "cancelled in the admin by ops"
        assert log.message_data == row.message_data
        assert log.message_id == row.stored_message_id is not None
        assert log.attempt == row.retry_count
        assert log.when_added == row.when_added
        expected = (
            ["bob@example.com"] if state == "due" else ["alice@example.com", "bob@example.com"]
        )
        assert log.recipients == [
            [address, "cancelled", None, "cancelled in the admin by ops"] for address in expected
        ]


def test_cancel_respects_the_log_data_setting(settings: Any) -> None:
    settings.MAILER_EMAIL_LOG_MESSAGE_DATA = False
    row = queued("due")
    operations.cancel(Message.objects.all(), by="ops")
    log = MessageLog.objects.get(queue_id=row.pk)
    assert log.message_data is None
    assert log.message_id == row.stored_message_id


def test_cancel_that_fails_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    row = queued("deferred")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(MessageLog.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        operations.cancel(Message.objects.all(), by="ops")
    after = Message.objects.get(pk=row.pk)
    assert (after.status, after.due_at, after.claimed_by) == (row.status, row.due_at, "")
    assert not MessageLog.objects.exists()


def test_send_copy_queues_the_same_content_with_a_new_message_id() -> None:
    (original,) = Message.objects.enqueue([html(["carol@example.com"])], priority=PRIORITY_HIGH)
    Message.objects.filter(pk=original.pk).update(status=Status.FAILED, due_at=None)
    report = operations.send_copy([Message.objects.get(pk=original.pk)])
    assert str(report) == "1 copy queued."
    copy = Message.objects.get(pk=report.created[0])
    assert copy.status == Status.QUEUED and copy.priority == PRIORITY_HIGH
    assert copy.subject == original.subject
    assert copy.to_addresses == ["carol@example.com"]
    old, new = original.email, copy.email
    assert old is not None and new is not None
    assert new.alternatives == old.alternatives and new.body == old.body
    assert copy.stored_message_id and copy.stored_message_id != original.stored_message_id


def test_send_copy_of_logged_mail_and_what_it_cannot_copy() -> None:
    sent = MessageLog.objects.create(
        message_data=Message.objects.enqueue([plain()])[0].message_data,
        when_added=timezone.now(),
        priority=PRIORITY_LOW,
        result=RESULT_SUCCESS,
        log_message="",
    )
    Message.objects.all().delete()
    not_kept = MessageLog.objects.create(
        message_data=None, when_added=timezone.now(), priority=2, result=RESULT_SUCCESS
    )
    garbage = MessageLog.objects.create(
        message_data="gAJ9cQAu", when_added=timezone.now(), priority=2, result=RESULT_SUCCESS
    )
    DontSendEntry.objects.create(to_address="blocked@example.com")
    blocked = MessageLog.objects.create(
        message_data=Message.objects.enqueue([plain(["ok@example.com"])])[0].message_data.replace(
            "ok@example.com", "blocked@example.com"
        ),
        when_added=timezone.now(),
        priority=2,
        result=RESULT_SUCCESS,
    )
    Message.objects.all().delete()

    report = operations.send_copy([sent, not_kept, garbage, blocked])

    assert report.done == 1
    assert report.skipped == {
        operations.NO_DATA: 1,
        operations.UNDECODABLE: 1,
        operations.BLOCKED: 1,
    }
    (copy,) = Message.objects.all()
    assert copy.pk == report.created[0]
    assert copy.priority == PRIORITY_LOW
    assert copy.subject == sent.subject

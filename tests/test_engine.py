"""The delivery engine: ``mailer.engine.send_all`` against a real SMTP server."""

from __future__ import annotations

import datetime
import smtplib
import time
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer import send_mail
from mailer.engine import SendCounts, handle_backend_exception, handle_delivery_exception, send_all
from mailer.models import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    DontSendEntry,
    Message,
    MessageLog,
    Status,
)
from mailer.queue import claim
from mailer.queue.message import MessageQuerySet

from .assertions import MailAssertions, find
from .samples import batch, html, plain, token_of, with_attachments

pytestmark = pytest.mark.django_db(transaction=True)


def queue(*messages: EmailMessage, **options: Any) -> list[Message]:
    return Message.objects.enqueue(list(messages), **options)


class TestSendAll(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_it_delivers_everything_due_and_empties_the_queue(self) -> None:
        messages = [plain(), html(), with_attachments()]
        queue(*messages)
        assert send_all() == SendCounts(sent=3, deferred=0, failed=0)
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()

    def test_it_reuses_one_smtp_connection_for_the_whole_run(self, settings: Any) -> None:
        settings.MAILER_SEND_CONCURRENCY = 1
        queue(*batch(25))
        send_all()
        assert len(self.server.received) == 25
        assert self.server.connections == 1

    def test_it_sends_high_then_medium_then_low_and_oldest_first(self) -> None:
        low, medium_old, high, medium_new = plain(), plain(), plain(), plain()
        queue(low, priority=PRIORITY_LOW)
        queue(medium_old, priority=PRIORITY_MEDIUM)
        queue(high, priority=PRIORITY_HIGH)
        queue(medium_new, priority=PRIORITY_MEDIUM)
        send_all()
        order = [token_of(m) for m in (high, medium_old, medium_new, low)]
        assert self.server.tokens() == order

    def test_it_never_sends_a_deferred_message_before_it_is_due(self) -> None:
        later = plain()
        queue(later)
        Message.objects.update(
            status=Status.DEFERRED, due_at=timezone.now() + datetime.timedelta(hours=1)
        )
        assert send_all() == SendCounts()
        self.assert_not_delivered(later)
        Message.objects.update(due_at=timezone.now() - datetime.timedelta(seconds=1))
        assert send_all().sent == 1
        self.assert_delivered_once(later)

    def test_it_holds_mail_queued_as_deferred_until_retry_deferred(self) -> None:
        held = plain()
        queue(held, priority="deferred")
        assert send_all() == SendCounts()
        assert Message.objects.retry_deferred() == 1
        send_all()
        self.assert_delivered_once(held)

    def test_scheduled_mail_waits_for_its_time(self) -> None:
        soon = plain()
        queue(soon, send_at=timezone.now() + datetime.timedelta(minutes=5))
        assert send_all() == SendCounts()
        assert Message.objects.scheduled().count() == 1
        Message.objects.update(due_at=timezone.now())
        send_all()
        self.assert_delivered_once(soon)

    def test_expired_mail_is_failed_not_sent_late(self) -> None:
        stale = plain()
        queue(stale, expires_at=timezone.now() + datetime.timedelta(minutes=1))
        Message.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
        assert send_all() == SendCounts(failed=1)
        self.assert_not_delivered(stale)
        self.assert_failed_with(stale, None, "expired")

    def test_the_stored_message_id_is_the_one_delivered_and_logged(self) -> None:
        message = plain()
        (row,) = queue(message)
        stored = row.stored_message_id
        assert stored and stored.startswith("<")
        send_all()
        delivered = self.assert_delivered_once(message)
        assert delivered.message["Message-ID"] == stored
        assert MessageLog.objects.get().message_id == stored

    def test_bcc_recipients_receive_the_message_without_seeing_the_header(self) -> None:
        message = plain(bcc=["secret@example.com"])
        queue(message)
        send_all()
        delivered = self.assert_delivered_once(message)
        assert "secret@example.com" in delivered.rcpt_tos
        assert b"secret@example.com" not in delivered.data

    def test_a_recipient_listed_twice_gets_one_copy(self) -> None:
        message = plain(to=["dup@example.com", "DUP@example.com"], cc=["dup@example.com"])
        queue(message)
        send_all()
        assert self.assert_delivered_once(message).rcpt_tos == ["dup@example.com"]


class TestLimits(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_max_batch_stops_the_run_after_that_many_sent(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_BATCH = 3
        queue(*batch(7))
        assert send_all().sent == 3
        self.assert_queued(4)
        assert send_all().sent == 3
        assert send_all().sent == 1

    def test_max_deferred_stops_the_run_after_that_many_failures(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_DEFERRED = 2
        self.server.faults.transient_first = 100
        queue(*batch(5))
        counts = send_all()
        assert counts.deferred == 2
        assert Message.objects.deferred().count() == 2
        self.assert_queued(3)

    def test_throttle_sleeps_after_each_message(self, settings: Any) -> None:
        settings.MAILER_EMAIL_THROTTLE = 0.05
        queue(*batch(4))
        started = time.monotonic()
        send_all()
        assert time.monotonic() - started >= 0.2

    def test_pause_send_sends_nothing(self, settings: Any) -> None:
        settings.MAILER_PAUSE_SEND = True
        queue(plain())
        assert send_all() == SendCounts()
        self.assert_queued(1)


class TestFailures(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_poison_message_between_two_good_ones_does_not_stop_the_run(self) -> None:
        first, poison, last = plain(), plain(), plain()
        queue(first)
        (bad,) = queue(poison)
        queue(last)
        Message.objects.filter(pk=bad.pk).update(message_data='{"v": 1, "subject": "broken"')
        counts = send_all()
        assert counts == SendCounts(sent=2, failed=1)
        self.assert_delivered_once(first)
        self.assert_delivered_once(last)
        bad.refresh_from_db()
        assert bad.status == Status.FAILED
        assert "cannot be decoded" in bad.last_reply
        log = MessageLog.objects.get(queue_id=bad.pk)
        assert log.result == RESULT_FAILURE
        assert log.exception == "mailer.exceptions.UndecodableMessage"

    def test_a_message_the_backend_cannot_render_is_failed_and_the_run_goes_on(self) -> None:
        good, bad_one = plain(), plain()
        (bad,) = queue(bad_one)
        queue(good)
        data = bad.message_data.replace('"from_email":"sender@example.com"', '"from_email":"a@b@c"')
        Message.objects.filter(pk=bad.pk).update(message_data=data)
        assert send_all() == SendCounts(sent=1, failed=1)
        self.assert_delivered_once(good)
        self.assert_failed_with(bad_one, None, "Invalid address")

    def test_a_transient_refusal_defers_with_the_reply_and_a_next_attempt(self) -> None:
        self.server.faults.transient_first = 1
        message = plain()
        queue(message)
        assert send_all() == SendCounts(deferred=1)
        row = self.assert_deferred_with(message, 451, "Try again later")
        assert row.retry_count == 1
        assert row.due_at > timezone.now() + datetime.timedelta(seconds=20)
        log = MessageLog.objects.get()
        assert (log.result, log.smtp_code, log.attempt) == (RESULT_FAILURE, 451, 1)
        assert log.recipients == [["alice@example.com", "transient", 451, "4.3.0 Try again later"]]

    def test_a_permanent_refusal_fails_at_once(self) -> None:
        message = plain()
        self.server.faults.refuse_data = {token_of(message).encode(): "554 5.7.1 Spam detected"}
        queue(message)
        assert send_all() == SendCounts(failed=1)
        self.assert_failed_with(message, 554, "Spam detected")
        assert send_all() == SendCounts()  # never retried

    def test_retries_stop_after_max_retries_and_the_message_fails(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_RETRIES = 2
        self.server.faults.transient_first = 100
        message = plain()
        queue(message)
        for expected in ("deferred", "deferred", "failed"):
            assert send_all() == SendCounts(**{expected: 1})
            Message.objects.filter(status=Status.DEFERRED).update(due_at=timezone.now())
        row = self.assert_failed_with(message, 451, "MAILER_EMAIL_MAX_RETRIES=2")
        assert row.retry_count == 3
        assert list(MessageLog.objects.order_by("pk").values_list("attempt", flat=True)) == [
            1,
            2,
            3,
        ]

    def test_mail_older_than_max_message_age_fails_instead_of_retrying(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_AGE = 60
        self.server.faults.transient_first = 1
        message = plain()
        queue(message)
        Message.objects.update(when_added=timezone.now() - datetime.timedelta(minutes=5))
        assert send_all() == SendCounts(failed=1)
        self.assert_failed_with(message, 451, "MAILER_MAX_MESSAGE_AGE")

    def test_an_unreachable_server_defers_one_message_and_stops_the_run(
        self, settings: Any
    ) -> None:
        from .conftest import point_at
        from .smtp import _free_port

        point_at(settings, _free_port())  # nothing listens there
        queue(*batch(3))
        assert send_all() == SendCounts(deferred=1)
        assert Message.objects.deferred().count() == 1
        assert Message.objects.due().count() == 2  # released, untouched
        assert Message.objects.deferred().get().retry_count == 1

    def test_a_server_that_drops_the_connection_after_data_gets_the_message_again(self) -> None:
        self.server.faults.drop_after_data = 1
        first, second = plain(), plain()
        queue(first, second)
        counts = send_all()
        assert counts == SendCounts(sent=1, deferred=1)
        self.assert_delivered_once(second)  # on a fresh connection
        Message.objects.update(due_at=timezone.now())
        send_all()
        self.assert_delivered_once(first)

    def test_a_claim_that_committed_but_whose_answer_was_lost_is_delivered(
        self, monkeypatch: Any
    ) -> None:
        # The connection cut after the claim's COMMIT, before its rows were read: the
        # rows are this run's, though it was told the claim failed.
        claimed = claim._claimed
        cuts = iter([True])

        def cut_once(*args: Any, **kwargs: Any) -> Any:
            rows = claimed(*args, **kwargs)
            if next(cuts, False):
                assert rows, "the first claim found mail"
                raise OperationalError(2013, "Lost connection to server during query")
            return rows

        monkeypatch.setattr(claim, "_claimed", cut_once)
        messages = batch(5)
        queue(*messages)
        assert send_all() == SendCounts(sent=5)
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()

    def test_a_result_write_whose_answer_was_lost_is_not_logged_twice(
        self, monkeypatch: Any
    ) -> None:
        # The connection cut after the write's COMMIT: the recorder was told it failed.
        write = MessageQuerySet.record
        cuts = iter([True])

        def committed_then_cut(self: MessageQuerySet, *args: Any, **kwargs: Any) -> Any:
            done = write(self, *args, **kwargs)
            if next(cuts, False):
                raise OperationalError(2013, "Lost connection to server during query")
            return done

        monkeypatch.setattr(MessageQuerySet, "record", committed_then_cut)
        messages = batch(5)
        queue(*messages)
        send_all()
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()
        assert MessageLog.objects.count() == len(messages)


class TestRecipients(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_partial_refusal_delivers_to_the_others_and_records_the_refused(self) -> None:
        self.server.faults.refuse_rcpt = {"ghost@example.com": "550 5.1.1 No such user"}
        message = plain(to=["alice@example.com", "ghost@example.com", "bob@example.com"])
        queue(message)
        assert send_all() == SendCounts(sent=1)
        delivered = self.assert_delivered_once(message)
        assert delivered.rcpt_tos == ["alice@example.com", "bob@example.com"]
        log = MessageLog.objects.get()
        assert log.result == RESULT_SUCCESS
        refused = [r for r in log.recipients if r[1] == "permanent"]
        assert refused == [["ghost@example.com", "permanent", 550, "5.1.1 No such user"]]
        assert "ghost@example.com" in log.log_message

    def test_a_retry_goes_only_to_recipients_not_yet_accepted(self) -> None:
        self.server.faults.refuse_rcpt = {"busy@example.com": "452 4.2.2 Mailbox full"}
        message = plain(to=["alice@example.com", "busy@example.com"])
        queue(message)
        assert send_all() == SendCounts(deferred=1)
        self.server.faults.refuse_rcpt = {}
        Message.objects.update(due_at=timezone.now())
        assert send_all() == SendCounts(sent=1)
        copies = self.server.by_token(token_of(message))
        assert [c.rcpt_tos for c in copies] == [["alice@example.com"], ["busy@example.com"]]
        assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"]

    def test_every_recipient_refused_permanently_fails_the_message(self) -> None:
        self.server.faults.refuse_rcpt = {
            "a@example.com": "550 5.1.1 unknown",
            "b@example.com": "553 5.1.3 bad address",
        }
        message = plain(to=["a@example.com", "b@example.com"])
        queue(message)
        assert send_all() == SendCounts(failed=1)
        self.assert_failed_with(message, 550, "unknown")

    def test_recipients_on_the_dont_send_list_added_after_queueing_are_skipped(self) -> None:
        message = plain(to=["keep@example.com", "Stop@Example.com"])
        queue(message)
        DontSendEntry.objects.create(to_address="stop@example.com")
        send_all()
        assert self.assert_delivered_once(message).rcpt_tos == ["keep@example.com"]

    def test_a_message_whose_recipients_all_opted_out_is_logged_as_dont_send(self) -> None:
        message = plain(to=["stop@example.com"])
        queue(message)
        DontSendEntry.objects.create(to_address="stop@example.com")
        send_all()
        self.assert_not_delivered(message)
        self.assert_queue_empty()
        assert MessageLog.objects.get().result == RESULT_DONT_SEND


class FlakyBackend(BaseEmailBackend):
    """A non-SMTP backend (like an ESP's API) that raises for chosen subjects."""

    sent: list[EmailMessage] = []
    in_transaction: list[bool] = []

    def send_messages(self, email_messages: Any) -> int:
        for message in email_messages:
            FlakyBackend.in_transaction.append(connection.in_atomic_block)
            if "explode" in message.subject:
                raise RuntimeError("HTTP 503 from the provider")
            if "reject" in message.subject:
                error = RuntimeError("bad request")
                error.status_code = 400  # type: ignore[attr-defined]
                raise error
            FlakyBackend.sent.append(message)
        return len(email_messages)


@pytest.fixture
def flaky_backend(settings: Any, legacy_style: None) -> Any:
    settings.MAILER_EMAIL_BACKEND = "tests.test_engine.FlakyBackend"
    FlakyBackend.sent = []
    FlakyBackend.in_transaction = []
    return FlakyBackend


class TestOtherBackends:
    def test_no_transaction_is_open_while_the_backend_sends(self, flaky_backend: Any) -> None:
        queue(*batch(3))
        send_all()
        assert flaky_backend.in_transaction == [False, False, False]

    def test_an_esp_error_with_an_http_status_is_classified_like_smtp(
        self, flaky_backend: Any
    ) -> None:
        rejected = plain()
        rejected.subject = "please reject " + rejected.subject
        exploding = plain()
        exploding.subject = "explode " + exploding.subject
        queue(rejected, exploding, plain())
        assert send_all() == SendCounts(sent=1, deferred=1, failed=1)
        failed = Message.objects.failed().get()
        assert (failed.last_code, failed.last_reply) == (400, "bad request")
        deferred = Message.objects.awaiting_retry().get()
        assert "HTTP 503" in deferred.last_reply


def legacy_handler(connection: Any, message: Message, exc: BaseException) -> tuple[Any, str]:
    """An error handler written for django-mailer: defers and logs by itself."""
    message.defer()
    MessageLog.objects.log(message, RESULT_FAILURE, log_message=f"custom: {exc}")
    return None, "deferred"


def raising_handler(connection: Any, message: Message, exc: BaseException) -> tuple[Any, str]:
    raise RuntimeError("handler bug")


class TestErrorHandler(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_the_default_is_importable_under_both_names(self) -> None:
        assert handle_backend_exception is handle_delivery_exception
        live = object()
        kept, action = handle_delivery_exception(
            live, Message(), smtplib.SMTPDataError(451, b"later")
        )
        assert (kept, action) == (live, "deferred")
        kept, action = handle_delivery_exception(
            live, Message(), smtplib.SMTPDataError(554, b"never")
        )
        assert (kept, action) == (live, "failed")
        dropped, action = handle_delivery_exception(
            live, Message(), smtplib.SMTPServerDisconnected()
        )
        assert (dropped, action) == (None, "deferred")

    def test_a_django_mailer_style_handler_keeps_working(self, settings: Any) -> None:
        settings.MAILER_ERROR_HANDLER = "tests.test_engine.legacy_handler"
        self.server.faults.transient_first = 1
        message, other = plain(), plain()
        queue(message, other)
        counts = send_all()
        assert counts.sent == 1
        row = find(token_of(message))
        assert row.status == Status.DEFERRED
        assert row.retry_count == 1
        logs = MessageLog.objects.filter(queue_id=row.pk)
        assert [log.log_message for log in logs] == ["custom: (451, b'4.3.0 Try again later')"]
        assert logs[0].attempt == 1
        self.assert_delivered_once(other)

    def test_a_handler_that_raises_does_not_stop_the_run(self, settings: Any) -> None:
        settings.MAILER_ERROR_HANDLER = "tests.test_engine.raising_handler"
        message = plain()
        self.server.faults.refuse_data = {token_of(message).encode(): "451 4.0.0 later"}
        queue(message, plain())
        counts = send_all()
        assert counts.sent == 1
        row = find(token_of(message))
        assert row.status == Status.DEFERRED
        assert "handler bug" in row.last_reply


class TestLog(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_every_attempt_leaves_one_log_row(self) -> None:
        self.server.faults.transient_first = 1
        queue(plain())
        send_all()
        Message.objects.update(due_at=timezone.now())
        send_all()
        logs = list(MessageLog.objects.order_by("pk"))
        assert [(log.result, log.attempt) for log in logs] == [
            (RESULT_FAILURE, 1),
            (RESULT_SUCCESS, 2),
        ]
        assert logs[1].smtp_code == 250
        assert logs[1].smtp_reply.startswith("2.0.0 Ok: queued as")
        assert logs[1].worker.count(":") >= 2

    def test_sent_mail_bodies_stay_out_of_the_log_when_asked(self, settings: Any) -> None:
        settings.MAILER_EMAIL_LOG_MESSAGE_DATA = False
        queue(plain())
        send_all()
        log = MessageLog.objects.get()
        assert log.message_data is None
        assert log.message_id

    def test_sent_mail_is_kept_whole_in_the_log_by_default(self) -> None:
        message = html()
        queue(message)
        send_all()
        log = MessageLog.objects.get()
        assert log.email is not None
        assert log.subject == message.subject
        assert log.to_addresses == message.to


class TestRoundTrips:
    def test_delivery_costs_at_most_a_tenth_of_a_statement_per_message(self, smtp: Any) -> None:
        queue(*batch(400))
        with CaptureQueriesContext(connection) as queries:
            assert send_all().sent == 400
        statements = [q["sql"] for q in queries.captured_queries]
        assert len(statements) <= 40, [sql[:70] for sql in statements]

    def test_enqueue_inside_a_transaction_that_rolls_back_sends_nothing(self, smtp: Any) -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            send_mail("Never", "body", "a@example.com", ["b@example.com"])
            raise RuntimeError("rollback")
        assert Message.objects.count() == 0
        assert send_all() == SendCounts()

"""Fault injection: for each way an SMTP server (or the database) misbehaves, every
message ends delivered exactly once or failed with the right reply -- none lost,
none twice -- and the run ends within a bound."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from mailer.delivery.recorder import EXPOSED_LIMIT
from mailer.engine import SendCounts, send_all
from mailer.models import Message, MessageLog, Status

from . import processes
from .assertions import MailAssertions, find
from .conftest import point_at
from .samples import batch, plain, token_of
from .smtp import SilentServer

pytestmark = pytest.mark.django_db(transaction=True)


def drain(deadline: float = 20.0) -> SendCounts:
    """Run send_all until nothing is due or deferred (retries come back within ~50 ms)."""
    total = SendCounts()
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        total = total + send_all()
        waiting = Message.objects.filter(
            status__in=[Status.QUEUED, Status.DEFERRED, Status.CLAIMED]
        )
        if not waiting.exists():
            return total
        time.sleep(0.02)
    raise AssertionError(
        f"the queue did not settle within {deadline}s: {list(waiting.values('status'))}"
    )


@pytest.fixture
def quick_retries(settings: Any) -> None:
    settings.MAILER_RETRY_BACKOFF = 0.01
    settings.MAILER_RETRY_BACKOFF_MAX = 0.05


@pytest.fixture(params=["pipelined", "one command at a time"])
def faulty_smtp(request: pytest.FixtureRequest, smtp: Any, quick_retries: None) -> Any:
    """The test server with and without PIPELINING: each fault is met both ways."""
    smtp.pipelining = request.param == "pipelined"
    return smtp


class TestTransientReplies(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, faulty_smtp: Any) -> None:
        self.server = faulty_smtp

    @pytest.mark.parametrize(
        "reply",
        [
            "421 4.3.2 Service shutting down",
            "450 4.2.1 Mailbox busy",
            "451 4.3.0 Local error",
            "452 4.3.1 Insufficient storage",
        ],
    )
    def test_the_first_attempts_refused_with_4xx_are_retried_until_delivered(
        self, reply: str
    ) -> None:
        self.server.faults.transient_first = 3
        self.server.faults.transient_code = reply
        messages = batch(5)
        Message.objects.enqueue(messages)
        started = time.monotonic()
        counts = drain()
        assert time.monotonic() - started < 15
        assert counts.sent == 5 and counts.failed == 0
        self.assert_each_delivered_once(messages)
        attempts = sorted(MessageLog.objects.values_list("attempt", flat=True))
        assert attempts.count(1) == 5  # every message had a first attempt
        assert len(attempts) == 5 + 3  # and three retries between them

    def test_a_4xx_refusal_of_one_recipient_is_retried_for_that_recipient_only(self) -> None:
        self.server.faults.refuse_rcpt = {"later@example.com": "450 4.2.1 Try later"}
        message = plain(to=["now@example.com", "later@example.com"])
        Message.objects.enqueue([message])
        send_all()
        self.server.faults.refuse_rcpt = {}
        drain()
        copies = self.server.by_token(token_of(message))
        assert [c.rcpt_tos for c in copies] == [["now@example.com"], ["later@example.com"]]


class TestPermanentReplies(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, faulty_smtp: Any) -> None:
        self.server = faulty_smtp

    @pytest.mark.parametrize(
        "reply",
        [
            "550 5.1.1 User unknown",
            "552 5.2.2 Mailbox full",
            "553 5.1.3 Bad address syntax",
            "554 5.7.1 Rejected",
        ],
    )
    def test_a_recipient_refused_with_5xx_is_failed_at_once_with_the_reply(
        self, reply: str
    ) -> None:
        self.server.faults.refuse_rcpt = {"gone@example.com": reply}
        refused, fine = plain(to=["gone@example.com"]), plain()
        Message.objects.enqueue([refused, fine])
        counts = drain()
        assert counts == SendCounts(sent=1, failed=1)
        code, text = reply.split(" ", 1)
        self.assert_failed_with(refused, int(code), text)
        self.assert_delivered_once(fine)
        assert find(token_of(refused)).retry_count == 1  # never retried

    @pytest.mark.parametrize(
        "reply", ["550 5.7.1 Message content rejected", "554 5.6.0 Bad message"]
    )
    def test_a_message_refused_with_5xx_at_data_is_failed_at_once(self, reply: str) -> None:
        refused = plain()
        self.server.faults.refuse_data = {token_of(refused).encode(): reply}
        Message.objects.enqueue([refused, plain()])
        assert drain() == SendCounts(sent=1, failed=1)
        code, text = reply.split(" ", 1)
        self.assert_failed_with(refused, int(code), text)
        self.assert_not_delivered(refused)

    def test_a_refused_sender_fails_the_message_with_the_reply(self) -> None:
        self.server.faults.refuse_mail = "553 5.7.1 Sender address rejected"
        message = plain()
        Message.objects.enqueue([message])
        assert drain() == SendCounts(failed=1)
        self.assert_failed_with(message, 553, "Sender address rejected")

    def test_some_recipients_accepted_and_others_refused(self) -> None:
        self.server.faults.refuse_rcpt = {"b@example.com": "550 5.1.1 unknown"}
        message = plain(to=["a@example.com", "b@example.com"], cc=["c@example.com"])
        Message.objects.enqueue([message])
        assert drain() == SendCounts(sent=1)
        assert self.assert_delivered_once(message).rcpt_tos == ["a@example.com", "c@example.com"]
        results = {r[0]: r[1:3] for r in MessageLog.objects.get().recipients}
        assert results == {
            "a@example.com": ["sent", 250],
            "b@example.com": ["permanent", 550],
            "c@example.com": ["sent", 250],
        }


class TestBrokenConnections(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, faulty_smtp: Any) -> None:
        self.server = faulty_smtp

    def test_a_connection_dropped_after_data_is_retried_and_delivered_once(self) -> None:
        self.server.faults.drop_after_data = 3
        messages = batch(6)
        Message.objects.enqueue(messages)
        assert drain().sent == 6
        self.assert_each_delivered_once(messages)
        assert self.server.connections >= 4  # a fresh connection after each drop

    def test_a_slow_server_within_the_timeout_still_gets_everything(self) -> None:
        self.server.faults.data_delay = 0.3
        messages = batch(3)
        Message.objects.enqueue(messages)
        started = time.monotonic()
        assert drain().sent == 3
        assert time.monotonic() - started < 5
        self.assert_each_delivered_once(messages)

    def test_a_server_slower_than_the_timeout_is_given_up_on_and_retried(
        self, settings: Any
    ) -> None:
        point_at(settings, self.server.port, timeout=0.5)
        settings.MAILER_SMTP_TIMEOUT = 0.5
        settings.MAILER_RETRY_BACKOFF = 60  # not retried within this run
        self.server.faults.data_delay = 2
        message = plain()
        Message.objects.enqueue([message])
        started = time.monotonic()
        assert send_all() == SendCounts(deferred=1)
        assert time.monotonic() - started < 3
        row = find(token_of(message))
        assert "timed out" in row.last_reply
        self.server.faults.data_delay = 0
        Message.objects.update(due_at=timezone.now())
        drain()
        # The first copy may have been accepted after we gave up: the at-least-once
        # window. Both copies then carry the same Message-ID.
        copies = self.server.by_token(token_of(message))
        assert 1 <= len(copies) <= 2
        assert len({c.message["Message-ID"] for c in copies}) == 1


class TestServerThatNeverAnswers(MailAssertions):
    def test_the_run_ends_within_the_timeout_and_nothing_is_lost(self, settings: Any) -> None:
        silent = SilentServer()
        try:
            point_at(settings, silent.port, timeout=0.5)
            settings.MAILER_SMTP_TIMEOUT = 0.5
            Message.objects.enqueue(batch(4))
            started = time.monotonic()
            counts = send_all()
            assert time.monotonic() - started < 3
            assert counts == SendCounts(deferred=1)  # the run stops: the server is down
            assert Message.objects.count() == 4
            assert "timed out" in Message.objects.deferred().get().last_reply
        finally:
            silent.close()

    def test_the_default_timeout_applies_when_the_backend_sets_none(self, settings: Any) -> None:
        silent = SilentServer()
        try:
            point_at(settings, silent.port, timeout=None)
            settings.MAILER_SMTP_TIMEOUT = 0.5
            Message.objects.enqueue([plain()])
            started = time.monotonic()
            assert send_all() == SendCounts(deferred=1)
            assert time.monotonic() - started < 3
        finally:
            silent.close()


@pytest.mark.slow
@pytest.mark.server_database
class TestDatabaseGoesAway(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_worker_survives_its_connections_being_cut_and_loses_nothing(self) -> None:
        self.server.faults.data_delay = 0.01
        messages = batch(300)
        Message.objects.enqueue(messages)
        settings_json = json.dumps({"MAILER_RETRY_BACKOFF": 0.01, "MAILER_RETRY_BACKOFF_MAX": 0.05})
        worker = processes.start(
            ["runmailer", "--concurrency", "2"],
            self.server.port,
            MAILER_TEST_SETTINGS=settings_json,
        )
        try:
            processes.wait_until(lambda: len(self.server.received) >= 40, timeout=30)
            cuts = 0
            for _ in range(3):  # cut repeatedly while it works
                cuts += processes.cut_database_connections()
                time.sleep(0.3)
            assert cuts > 0
            try:
                processes.wait_until(
                    lambda: not Message.objects.exclude(status=Status.FAILED).exists(), timeout=60
                )
            except AssertionError:
                left = list(
                    Message.objects.values_list(
                        "status", "claimed_by", "lease_expires_at", "due_at"
                    )
                )
                _, _, err = processes.stop(worker, signal.SIGTERM)
                raise AssertionError(
                    f"left in the queue: {left[:5]} ({len(left)}); worker said:\n{err[-4000:]}"
                ) from None
        finally:
            code, _, err = processes.stop(worker, signal.SIGTERM)
        assert code == 0, err[-2000:]
        arrived = self.server.tokens()
        tokens = [token_of(m) for m in messages]
        assert set(tokens) <= set(arrived), "nothing is lost"
        assert not Message.objects.exists(), "every message ended sent"
        for token in {t for t in arrived if arrived.count(t) > 1}:
            ids = {c.message["Message-ID"] for c in self.server.by_token(token)}
            assert (
                len(ids) == 1
            )  # a result not yet recorded when the connection went: resent as itself
        # Each cut may lose the results not yet committed: at most what the gate lets out.
        assert len(arrived) - len(set(arrived)) <= 3 * EXPOSED_LIMIT

    def test_send_all_cut_off_mid_run_leaves_the_queue_consistent(self) -> None:
        self.server.faults.data_delay = 0.005
        messages = batch(150)
        Message.objects.enqueue(messages)

        def cut() -> None:
            time.sleep(0.3)
            processes.cut_database_connections()
            connection.close()

        cutter = threading.Thread(target=cut)
        cutter.start()
        try:
            send_all()
        except DatabaseError:
            connection.close()  # the run may fail; the queue must still be right
        cutter.join()
        Message.objects.filter(status=Status.CLAIMED).update(
            lease_expires_at=timezone.now() - timezone.timedelta(seconds=1)
        )  # as if the lease had run out: a claim not given back is only delayed
        drain()
        arrived = self.server.tokens()
        assert {token_of(m) for m in messages} <= set(arrived), "nothing is lost"
        assert not Message.objects.exists()
        doubled = [t for t in set(arrived) if arrived.count(t) > 1]
        assert len(doubled) <= EXPOSED_LIMIT  # at most what was unrecorded when it went


class TestInternationalAddresses(MailAssertions):
    """Only a non-ASCII local part needs SMTPUTF8; names and domains are encoded."""

    @pytest.fixture
    def plain_server(self, settings: Any) -> Any:
        from .smtp import SMTPServer

        server = SMTPServer(smtputf8=False).start()
        point_at(settings, server.port)
        self.server = server
        yield server
        server.stop()

    def test_non_ascii_names_and_domains_go_to_a_server_without_smtputf8(
        self, plain_server: Any
    ) -> None:
        message = plain(to=["Zoë Åberg <zoe@example.com>", "b@exämple.com"])
        Message.objects.enqueue([message])
        assert send_all() == SendCounts(sent=1)
        delivered = self.assert_delivered_once(message)
        assert delivered.rcpt_tos == ["zoe@example.com", "b@xn--exmple-cua.com"]
        assert delivered.message["To"].addresses[0].display_name == "Zoë Åberg"

    def test_a_non_ascii_local_part_fails_clearly_without_smtputf8(self, plain_server: Any) -> None:
        message = plain(to=["jürgen@example.com"])
        Message.objects.enqueue([message])
        assert send_all() == SendCounts(failed=1)
        self.assert_failed_with(message, None, "does not offer SMTPUTF8")

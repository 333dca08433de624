"""The SMTP conversation: pipelined where the server offers it, one command at a time
where it does not, and in step with the server whatever it refuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage

from mailer.engine import SendCounts, send_all
from mailer.models import Message

from .assertions import MailAssertions
from .conftest import point_at
from .samples import batch, plain
from .smtp import ScriptedServer

pytestmark = pytest.mark.django_db(transaction=True)


def queue(*messages: EmailMessage) -> None:
    Message.objects.enqueue(list(messages))


class TestPipelining(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_the_envelope_goes_in_one_write_to_a_server_that_offers_pipelining(self) -> None:
        messages = batch(3, to=["a@example.com", "b@example.com"])
        queue(*messages)
        assert send_all() == SendCounts(sent=3)
        self.assert_each_delivered_once(messages)
        assert self.server.pipelined == [True, True, True]

    def test_one_command_at_a_time_to_a_server_without_pipelining(self) -> None:
        self.server.pipelining = False
        messages = batch(3)
        queue(*messages)
        assert send_all() == SendCounts(sent=3)
        self.assert_each_delivered_once(messages)
        assert self.server.pipelined == [False, False, False]

    def test_the_setting_turns_pipelining_off(self, settings: Any) -> None:
        settings.MAILER_SMTP_PIPELINING = False
        queue(*batch(2))
        send_all()
        assert self.server.pipelined == [False, False]

    @pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
    def test_lines_starting_with_a_dot_arrive_intact(self, pipelining: bool) -> None:
        self.server.pipelining = pipelining
        message = plain()
        message.body = f".leading dot\n..two dots\n.\nalone above\n{message.body}"
        queue(message)
        send_all()
        self.assert_delivered_intact(message)

    def test_a_refused_sender_leaves_the_connection_in_step_for_the_next_message(
        self,
    ) -> None:
        self.server.faults.refuse_sender = {"spammer@example.com": "553 5.7.1 Go away"}
        refused = plain()
        refused.from_email = "spammer@example.com"
        fine = plain()
        queue(refused, fine)
        assert send_all() == SendCounts(sent=1, failed=1)
        self.assert_failed_with(refused, 553, "Go away")
        self.assert_delivered_once(fine)
        assert self.server.connections == 1

    def test_a_wholly_refused_envelope_never_sends_the_content(self) -> None:
        self.server.faults.refuse_rcpt = {
            "gone@example.com": "550 5.1.1 No such user",
            "left@example.com": "550 5.1.1 No such user",
        }
        refused = plain(to=["gone@example.com", "left@example.com"])
        fine = plain()
        queue(refused, fine)
        assert send_all() == SendCounts(sent=1, failed=1)
        assert self.server.data_attempts == 1  # the fine message's; never the refused one's
        self.assert_delivered_once(fine)
        assert self.server.connections == 1  # still in step: the same connection went on


class TestAServerThatTakesDataAfterRefusingEveryone:
    """RFC 2920: if DATA is accepted although no recipient was, the client ends it at once."""

    @pytest.fixture
    def scripted(self, settings: Any) -> Iterator[ScriptedServer]:
        server = ScriptedServer({"RCPT": "550 5.1.1 No such user", "DATA": "354 go on"})
        point_at(settings, server.port)
        yield server
        server.close()

    def test_the_empty_data_is_ended_and_nothing_of_the_message_is_sent(
        self, scripted: ScriptedServer
    ) -> None:
        message = plain()
        queue(message)
        assert send_all() == SendCounts(failed=1)
        sent = b"".join(scripted.lines).upper()
        assert b"DATA\r\n.\r\nRSET\r\n" in sent
        assert message.subject.upper().encode() not in sent

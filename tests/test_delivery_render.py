"""What an SMTP server is sent: the renderer's bytes, made from the stored document, for
mail of Django's own classes; Django's rendering for everything the renderer leaves to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from mailer import compat
from mailer.engine import SendCounts, send_all
from mailer.message import codec
from mailer.message.render import render
from mailer.models import Message

from .assertions import MailAssertions, RenderAssertions, djangos
from .samples import non_ascii, non_ascii_everywhere, plain, with_attachments
from .test_render_cases import OwnRendering

pytestmark = pytest.mark.django_db(transaction=True)

OWN_RENDERING = f"{OwnRendering.__module__}.OwnRendering"


def queued_document(message: EmailMessage) -> dict[str, Any]:
    """Queue ``message``; return the document the queue stored for it."""
    Message.objects.enqueue([message])
    row = Message.objects.get()
    return dict(json.loads(row.message_data))


@pytest.fixture
def rebuilt() -> Iterator[mock.MagicMock]:
    """Counts the messages Django is asked to rebuild from their stored documents."""
    with mock.patch.object(codec, "from_document", wraps=codec.from_document) as spy:
        yield spy


class TestRenderedFromTheDocument(MailAssertions, RenderAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_message_of_djangos_own_class_goes_out_as_the_renderer_renders_it(
        self, rebuilt: mock.MagicMock
    ) -> None:
        message = non_ascii()
        message.extra_headers["Date"] = "Mon, 07 Dec 2026 01:00:00 +0000"
        doc = queued_document(message)
        assert send_all() == SendCounts(sent=1)
        received = self.assert_delivered_once(message)
        assert received.data == render(doc)
        assert rebuilt.call_count == 0, "Django rebuilt the message"

    @pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
    def test_alternatives_and_attachments_read_as_django_would_send_them(
        self, rebuilt: mock.MagicMock, pipelining: bool
    ) -> None:
        self.server.pipelining = pipelining
        message = with_attachments(["Zoë <zoe@example.com>", "bob@example.com"])
        # Sent and rendered again here: without a Date of its own, the two may fall
        # in different seconds.
        message.extra_headers["Date"] = "Mon, 07 Dec 2026 01:00:00 +0000"
        doc = queued_document(message)
        assert send_all() == SendCounts(sent=1)
        assert rebuilt.call_count == 0, "Django rebuilt the message"
        received = self.assert_delivered_once(message)
        self.assert_same_reading(received.data, djangos(doc), message)
        self.assert_delivered_intact(message)

    def test_a_message_with_lines_starting_with_dots_arrives_as_rendered(self) -> None:
        message = plain(headers={"Date": "Mon, 07 Dec 2026 01:00:00 +0000"})
        message.body = f".\n..two\n.one\n{message.body}"
        doc = queued_document(message)
        send_all()
        assert self.assert_delivered_once(message).data == render(doc)

    def test_a_class_with_its_own_message_method_is_rendered_by_django(
        self, settings: Any, rebuilt: mock.MagicMock
    ) -> None:
        settings.MAILER_MESSAGE_CLASSES = [OWN_RENDERING]
        message = OwnRendering("Own", "Rendered by its class", "a@example.com", ["b@example.com"])
        message.extra_headers["X-Token"] = token = plain().subject.split()[-1]
        Message.objects.enqueue([message])
        assert send_all() == SendCounts(sent=1)
        received = self.assert_delivered_once(token)
        assert received.message["X-Own"] == "yes"
        assert rebuilt.call_count == 1

    def test_an_address_only_smtputf8_carries_is_rendered_by_django(
        self, rebuilt: mock.MagicMock
    ) -> None:
        message = non_ascii_everywhere(["jörg@example.com"])
        Message.objects.enqueue([message])
        assert send_all() == SendCounts(sent=1)
        received = self.assert_delivered_once(message)
        assert "SMTPUTF8" in received.mail_options
        assert rebuilt.call_count == 1


def test_a_backend_other_than_smtp_is_given_djangos_email_message(
    legacy_style: None, settings: Any
) -> None:
    settings.MAILER_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    message = with_attachments()
    Message.objects.enqueue([message])
    assert send_all() == SendCounts(sent=1)
    (sent,) = mail.outbox
    assert type(sent) is type(message)
    assert (sent.subject, sent.body, len(sent.attachments)) == (
        message.subject,
        message.body,
        len(message.attachments),
    )


class TestEnvelope:
    """The envelope of a plain address is the address itself: no parser is asked, and
    what it gives is what Django's parser gives."""

    @pytest.mark.parametrize(
        "address",
        [
            "alice@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'brien@example.com",
            "x_y-z@sub-domain.example",
            "{weird}|~!#$%&*=?^`@example.com",
        ],
    )
    def test_a_plain_address_goes_as_it_is(self, address: str) -> None:
        assert compat.plain_address(address)
        backend = _backend()
        assert compat.envelope_address(backend, address, "utf-8", utf8=False) == address
        assert compat.parsed_envelope_address(backend, address, utf8=False) == address

    @pytest.mark.parametrize(
        "address",
        [
            "Alice <alice@example.com>",
            "alice@exämple.com",
            "jörg@example.com",
            '"john smith"@example.com',
            "alice@[127.0.0.1]",
            "a..b@example.com",
            "alice@example.com (Alice)",
            "webmaster",
        ],
    )
    def test_anything_else_is_parsed(self, address: str) -> None:
        assert not compat.plain_address(address)


def _backend() -> Any:
    """Django's SMTP backend, not configured: turning addresses into envelopes needs
    nothing of its settings."""
    return SMTPBackend.__new__(SMTPBackend)

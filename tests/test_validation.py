"""Enqueue-time validation: a message the queue could not deliver is refused in the caller.

Every refusal raises the specific exception from ``mailer.exceptions`` (each
also a ``ValueError``, so ``except ValueError`` / ``BadHeaderError`` code keeps
working) and queues nothing -- not even the good messages of the same batch.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from email.mime.text import MIMEText
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import transaction
from django.utils.translation import gettext_lazy
from hypothesis import given, settings
from hypothesis import strategies as st

import mailer
from mailer import compat
from mailer.delivery.backends import open_backend
from mailer.delivery.transport import _needs_smtputf8
from mailer.exceptions import (
    InvalidAddress,
    InvalidHeader,
    InvalidMessage,
    InvalidRecipientList,
    MailerError,
    MessageTooLarge,
)
from mailer.message import codec as storage
from mailer.message.validation import check_address, validate
from mailer.models import Message
from mailer.queue.aliases import default_delivery_alias

from .assertions import MailAssertions
from .samples import plain

LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]
BAD_ADDRESSES: list[Any] = [
    None,
    "",
    "not an address",
    "alice@example.com, bob@example.com",
    "Alice <alice@example.com",
    "alice@example.com>",
    "@example.com",
    "alice@",
    "a@b@example.com",
    "undisclosed-recipients:;",
    "alice@example.com\nBcc: victim@example.com",
    "Alice\r\n <alice@example.com>",
    "alice\x00@example.com",
    "lone\udc80@example.com",
    "a..b@example.com",
    "alice@example..com",
    "Alice <webmaster>",
    "jörg",
    "0@[",
    " .@",
    "alice@\x8e.example.com",  # no IDNA form
    42,
    b"alice@example.com",
]
# Strings built from the characters that matter in addresses, in address-like shapes.
_ATOMS = st.text(
    st.sampled_from(list("abXZ09.-_+!#$%&'*/=?^`{|}~\"\\ ()<>[]:;@,éü日")), max_size=12
)
ADDRESS_LIKE = st.one_of(
    st.builds("{}@{}".format, _ATOMS, _ATOMS),
    st.builds("{} <{}@{}>".format, _ATOMS, _ATOMS, _ATOMS),
    st.builds('"{}" <{}@{}>'.format, _ATOMS, _ATOMS, _ATOMS),
    _ATOMS,
)
GOOD_ADDRESSES = [
    "alice@example.com",
    "Alice Smith <alice@example.com>",
    '"Smith, Alice" <alice+news@mail.example.com>',
    "Jürgen Müller <juergen@exämple.de>",
    "jörg@example.com",
    "webmaster",
]


class Queueing(MailAssertions):
    """Tests that queue through the backend Django's mail functions use."""

    backend: Any

    @pytest.fixture(autouse=True)
    def _backend(self, queueing_backend: Any) -> None:
        self.backend = queueing_backend

    def queue(self, *messages: EmailMessage) -> int:
        return int(self.backend.send_messages(list(messages)))


@pytest.mark.django_db
class TestHeaders(Queueing):
    @pytest.mark.parametrize("line_break", [*LINE_BREAKS, "\x00"])
    def test_line_break_or_nul_in_the_subject(self, line_break: str) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="subject"):
            mailer.send_mail(
                f"Hello{line_break}Bcc: victim@example.com",
                "Body",
                "sender@example.com",
                ["alice@example.com"],
            )

    @pytest.mark.parametrize("line_break", [*LINE_BREAKS, "\x00"])
    def test_line_break_or_nul_in_a_header(self, line_break: str) -> None:
        message = plain(headers={"X-Campaign": f"spring{line_break}Bcc: victim@example.com"})
        with self.refused_at_enqueue(InvalidHeader, match="X-Campaign"):
            message.send()

    @pytest.mark.parametrize(
        "name", ["X Campaign", "X-Campaign:", "", "X-Ünicode", "X-\x00", "X-Line\nBreak", 7]
    )
    def test_malformed_header_name(self, name: Any) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="header name"):
            self.queue(plain(headers={name: "value"}))

    @pytest.mark.parametrize(
        "name", ["Subject", "subject", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"]
    )
    def test_header_django_sets_itself(self, name: str) -> None:
        """Django 6 refuses a second one at delivery; Django 5.2 sends both."""
        with self.refused_at_enqueue(InvalidHeader, match="set by Django"):
            self.queue(plain(headers={name: "text/plain"}))

    @pytest.mark.parametrize("value", [b"a\r\nBcc: x@example.com", b"\xff\xfe"], ids=repr)
    def test_header_bytes_with_a_line_break_or_not_utf8(self, value: bytes) -> None:
        with self.refused_at_enqueue(InvalidHeader):
            self.queue(plain(headers={"X-Value": value}))

    def test_non_ascii_message_id(self) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="Message-ID must be ASCII"):
            self.queue(plain(headers={"Message-ID": "<grüße@example.com>"}))

    @settings(max_examples=300, deadline=None)
    @given(
        subject=st.text(max_size=80),
        name=st.sampled_from(
            [
                "X-Tag",
                "Subject",
                "Comments",
                "Message-ID",
                "Date",
                "References",
                "Sender",
                "Content-Type",
                "MIME-Version",
                "List-Id",
                "In-Reply-To",
            ]
        ),
        value=st.text(max_size=80),
        filename=st.text(max_size=30),
    )
    def test_every_message_accepted_can_be_rendered(
        self, subject: str, name: str, value: str, filename: str
    ) -> None:
        """Accepted means Django can render it, with and without SMTPUTF8 (no poison)."""
        message = plain(headers={name: value})
        message.subject = subject
        if filename:
            message.attach(filename, b"\x00", "application/octet-stream")
        try:
            validate(message)
        except InvalidMessage:
            return
        compat.render(message)
        compat.render(message, utf8=True)

    def test_queue_control_headers_are_not_checked_as_sent_headers(self) -> None:
        """They are read and removed before storing, so any value the queue takes is fine."""
        from mailer.message import validation
        from mailer.queue import enqueue

        assert enqueue.CONTROL_HEADERS is validation.CONTROL_HEADERS
        when = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        message = plain(headers={"X-Mailer-Priority": 1, "X-Mailer-Send-At": when})
        assert self.queue(message) == 1
        (row,) = Message.objects.all()
        assert (row.priority, row.due_at) == (1, when)
        assert "X-Mailer" not in row.message_data

    def test_bcc_header(self) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="bcc"):
            self.queue(plain(headers={"Bcc": "hidden@example.com"}))

    @pytest.mark.parametrize("value", [["a", "b"], {"a": 1}, None, object()], ids=repr)
    def test_header_value_that_is_not_text(self, value: Any) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="must be text"):
            self.queue(plain(headers={"X-Value": value}))

    @pytest.mark.parametrize(
        ("name", "value", "django_6_renders_it"),
        [
            ("X-Count", 3, False),
            ("X-Ratio", 0.5, False),
            ("X-Day", datetime.date(2030, 1, 2), False),
            ("X-Bytes", b"caf\xc3\xa9", True),
            ("Date", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), True),
            ("X-Lazy", gettext_lazy("lazy text"), True),
        ],
    )
    def test_header_values_are_queued_only_if_django_can_render_them(
        self, name: str, value: Any, django_6_renders_it: bool
    ) -> None:
        """Django 6 cannot render numbers or dates (but a datetime Date); Django 5.2 sends
        str(value), which for bytes is their repr ("b'...'"): refused as never meant."""
        renders = django_6_renders_it if compat.MODERN_EMAIL else not isinstance(value, bytes)
        message = plain(headers={name: value, "Message-ID": "<fixed@example.com>"})
        message.extra_headers.setdefault("Date", "Wed, 02 Jan 2030 03:04:05 +0000")
        if not renders:
            if compat.MODERN_EMAIL:  # DJANGO_COMPAT(<6.0): Django 5.2 renders a bytes repr.
                with pytest.raises(TypeError):
                    compat.render(message)  # what delivery would have met
            with self.refused_at_enqueue(InvalidHeader, match="must be text"):
                self.queue(message)
            return
        assert self.queue(message) == 1
        (row,) = Message.objects.all()
        assert row.email is not None
        assert compat.render(row.email) == compat.render(message)

    def test_malformed_address_in_an_address_header(self) -> None:
        with self.refused_at_enqueue(InvalidAddress, match="header Reply-To"):
            self.queue(plain(headers={"Reply-To": "ok@example.com, <broken"}))

    def test_headers_that_are_not_a_dict(self) -> None:
        message = plain()
        message.extra_headers = [("X-A", "b")]  # type: ignore[assignment]
        with self.refused_at_enqueue(InvalidHeader, match="dict"):
            self.queue(message)

    def test_non_ascii_headers_are_queued(self) -> None:
        message = plain(headers={"X-Campaign": "été ✓ 日本"})
        message.subject = f"Grüße — {message.subject}"
        assert self.queue(message) == 1


@pytest.mark.django_db
class TestAddresses(Queueing):
    @pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
    @pytest.mark.parametrize("address", BAD_ADDRESSES, ids=repr)
    def test_malformed_or_none_recipient(self, field: str, address: Any) -> None:
        message = plain()
        getattr(message, field).append(address)
        with self.refused_at_enqueue(InvalidAddress, match=field):
            self.queue(message)

    @pytest.mark.parametrize("address", BAD_ADDRESSES, ids=repr)
    def test_malformed_or_none_sender(self, address: Any) -> None:
        message = plain()
        message.from_email = address
        with self.refused_at_enqueue(InvalidAddress, match="from_email"):
            self.queue(message)

    @pytest.mark.parametrize("address", GOOD_ADDRESSES)
    def test_valid_addresses_are_queued(self, address: str) -> None:
        message = plain(to=[address], cc=[address], reply_to=[address])
        message.from_email = address
        assert self.queue(message) == 1
        self.assert_queued(1)

    @settings(max_examples=300, deadline=None)
    @given(ADDRESS_LIKE)
    def test_every_address_accepted_can_be_delivered(self, address: str) -> None:
        """Accepted means Django can put it in the headers and the envelope (no poison)."""
        try:
            check_address(address, "to")
        except InvalidAddress:
            return
        utf8 = _needs_smtputf8(address)
        message = plain(to=[address])
        compat.render(message, utf8=utf8)
        backend = open_backend(default_delivery_alias())
        assert compat.envelope_address(backend, address, None, utf8=utf8)

    def test_none_in_send_mail_recipients(self) -> None:
        with self.refused_at_enqueue(InvalidAddress, match="None"):
            mailer.send_mail("Hi", "Body", "a@example.com", ["b@example.com", None])  # type: ignore[list-item]


@pytest.mark.django_db
class TestRecipientLists(Queueing):
    def test_send_mail_with_a_string_as_recipient_list(self) -> None:
        with self.refused_at_enqueue(InvalidRecipientList, match="list or tuple") as error:
            mailer.send_mail("Hi", "Body", "sender@example.com", "alice@example.com")  # type: ignore[arg-type]
        # Code written for Django catches TypeError; code that validates input, ValueError.
        assert isinstance(error.value, TypeError)
        assert isinstance(error.value, ValueError)

    @pytest.mark.parametrize("value", [None, 42, b"alice@example.com"], ids=repr)
    def test_send_mail_with_no_list_at_all(self, value: Any) -> None:
        with self.refused_at_enqueue(InvalidRecipientList):
            mailer.send_mail("Hi", "Body", "sender@example.com", value)

    def test_string_as_to_sent_through_the_backend(self, queueing_backend: Any) -> None:
        message = plain()
        message.to = "alice@example.com"  # type: ignore[assignment]
        with self.refused_at_enqueue(InvalidRecipientList, match="to must be a list"):
            queueing_backend.send_messages([message])

    def test_string_as_to_sent_with_send(self) -> None:
        """Django's own send() trips over it first (str + list); nothing is queued either way."""
        message = plain()
        message.to = "alice@example.com"  # type: ignore[assignment]
        with self.refused_at_enqueue(TypeError):
            message.send()

    @pytest.mark.parametrize("field", ["cc", "bcc", "reply_to"])
    def test_string_as_another_recipient_field(self, field: str, queueing_backend: Any) -> None:
        message = plain()
        setattr(message, field, "alice@example.com")
        with self.refused_at_enqueue(InvalidRecipientList, match=field):
            queueing_backend.send_messages([message])

    @pytest.mark.parametrize(
        "make",
        [
            lambda: ("alice@example.com", "bob@example.com"),
            lambda: (a for a in ["alice@example.com", "bob@example.com"]),
            lambda: iter({"alice@example.com": 1, "bob@example.com": 2}),
        ],
        ids=["tuple", "generator", "iterator"],
    )
    def test_send_mail_takes_any_iterable_as_django_does(self, make: Callable[[], Any]) -> None:
        assert mailer.send_mail("Hi", "Body", "sender@example.com", make()) == 1
        (row,) = Message.objects.all()
        assert row.to_addresses == ["alice@example.com", "bob@example.com"]

    def test_send_mass_mail_with_a_string_in_one_tuple(self) -> None:
        with self.refused_at_enqueue(InvalidRecipientList):
            mailer.send_mass_mail(
                [
                    ("One", "Body", "a@example.com", ["b@example.com"]),
                    ("Two", "Body", "a@example.com", "c@example.com"),  # type: ignore[list-item]
                ]
            )


@pytest.mark.django_db
class TestContent(Queueing):
    def test_nul_in_the_body(self) -> None:
        with self.refused_at_enqueue(InvalidMessage, match="body contains a NUL"):
            mailer.send_mail("Hi", "Bo\x00dy", "a@example.com", ["b@example.com"])

    def test_nul_in_the_html_alternative(self) -> None:
        with self.refused_at_enqueue(InvalidMessage, match="text/html alternative"):
            mailer.send_html_mail("Hi", "Body", "<p>\x00</p>", "a@example.com", ["b@example.com"])

    @pytest.mark.parametrize("content", ["a\x00b", b"a\x00b"], ids=["str", "utf-8 bytes"])
    def test_nul_in_a_text_attachment(self, content: str | bytes) -> None:
        message = plain()
        # Not attach(), which decodes UTF-8 bytes: Django decodes them again when rendering.
        message.attachments.append(("notes.txt", content, "text/plain"))
        with self.refused_at_enqueue(InvalidMessage, match="notes.txt"):
            self.queue(message)

    def test_nul_in_a_text_attachment_without_a_mimetype(self) -> None:
        message = plain()
        message.attachments.append(("notes.txt", "a\x00b", None))
        with self.refused_at_enqueue(InvalidMessage, match="NUL"):
            self.queue(message)

    def test_nul_in_a_file_name(self) -> None:
        message = plain()
        message.attach("evil\x00.txt", "text", "text/plain")
        with self.refused_at_enqueue(InvalidHeader, match="filename"):
            self.queue(message)

    def test_nul_in_a_mime_part_sent_unencoded(self) -> None:
        message = plain()
        message.attachments.append(MIMEText("a\x00b", "plain", "us-ascii"))
        with self.refused_at_enqueue(InvalidMessage, match="text/plain attachment"):
            self.queue(message)

    def test_nul_in_binary_content_is_queued(self) -> None:
        """Binary attachments travel base64-encoded: their NUL bytes are never sent raw."""
        message = plain()
        message.attach("blob.bin", b"\x00\x00\xff", "application/octet-stream")
        message.attach("latin.txt", b"caf\xe9\x00", "text/plain")  # not UTF-8: sent as binary
        message.attachments.append(MIMEText("a\x00b", "plain", "utf-8"))  # base64
        assert self.queue(message) == 1

    def test_lone_surrogate_in_the_body(self) -> None:
        with self.refused_at_enqueue(InvalidMessage, match="not valid Unicode"):
            mailer.send_mail("Hi", "Body \udc80", "a@example.com", ["b@example.com"])

    def test_lone_surrogate_in_the_subject(self) -> None:
        with self.refused_at_enqueue(InvalidHeader, match="not valid Unicode"):
            mailer.send_mail("Hi \ud800", "Body", "a@example.com", ["b@example.com"])

    @pytest.mark.parametrize(
        "attachment",
        [("only-two", b"x"), "a string", {"filename": "x"}, (None, b"data", None)],
        ids=["two-tuple", "string", "dict", "no-name-no-type"],
    )
    def test_attachment_django_cannot_render(self, attachment: Any) -> None:
        message = plain()
        message.attachments.append(attachment)
        with self.refused_at_enqueue(InvalidMessage, match="attachment|Attachment"):
            self.queue(message)

    def test_attachment_without_content(self) -> None:
        message = plain()
        message.attachments.append(("a.txt", None, "text/plain"))
        with self.refused_at_enqueue(InvalidMessage, match="no content"):
            self.queue(message)

    def test_forwarded_message_is_validated_too(self) -> None:
        inner = EmailMessage("Inner\nBcc: x@example.com", "x", "a@example.com", ["b@example.com"])
        message = plain()
        message.attach("fwd.eml", inner, "message/rfc822")
        with self.refused_at_enqueue(InvalidHeader):
            self.queue(message)


@pytest.mark.django_db
class TestSize(Queueing):
    def stored_size(self, message: EmailMessage) -> int:
        """Bytes ``message`` takes once stored (its Message-ID is fixed, so this is exact)."""
        return len(storage.encode(message).encode("utf-8"))

    def big(self, size: int = 50_000) -> EmailMultiAlternatives:
        message = EmailMultiAlternatives(
            "Big", "Body", "a@example.com", ["b@example.com"], headers={"Message-ID": "<big@x>"}
        )
        message.attach("big.bin", b"\x01" * size, "application/octet-stream")
        return message

    def test_message_over_the_limit(self, settings: Any) -> None:
        message = self.big()
        settings.MAILER_MAX_MESSAGE_SIZE = self.stored_size(message) - 1
        with self.refused_at_enqueue(MessageTooLarge, match="MAILER_MAX_MESSAGE_SIZE"):
            self.queue(message)

    def test_message_exactly_at_the_limit_is_queued(self, settings: Any) -> None:
        message = self.big()
        settings.MAILER_MAX_MESSAGE_SIZE = self.stored_size(message)
        assert self.queue(message) == 1

    def test_the_limit_counts_bytes_not_characters(self, settings: Any) -> None:
        message = self.big(size=10)
        message.body = "ü" * 100_000  # 100,000 characters, 200,000 bytes
        settings.MAILER_MAX_MESSAGE_SIZE = self.stored_size(message) - 1
        assert len(storage.encode(message)) < settings.MAILER_MAX_MESSAGE_SIZE
        with self.refused_at_enqueue(MessageTooLarge):
            self.queue(message)

    def test_no_limit(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = None
        assert self.queue(self.big(size=2_000_000)) == 1

    def test_default_limit_refuses_a_20_mb_attachment(self) -> None:
        with self.refused_at_enqueue(MessageTooLarge):
            self.queue(self.big(size=20 * 1024 * 1024))


def _is_mysql() -> bool:
    from django.db import connection

    return connection.vendor == "mysql"


@pytest.mark.django_db(transaction=True)
@pytest.mark.mariadb_only  # max_allowed_packet is a MySQL/MariaDB limit
class TestDatabasePacketLimit(Queueing):
    """MariaDB drops the connection on a statement over max_allowed_packet (16 MB here)."""

    def packet(self) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            return int(cursor.fetchone()[0])

    def test_message_over_the_packet_is_refused_not_a_lost_connection(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = None
        message = plain()
        message.attach("big.bin", b"\x01" * self.packet(), "application/octet-stream")
        with self.refused_at_enqueue(MessageTooLarge, match="max_allowed_packet"):
            self.queue(message)
        assert self.queue(plain()) == 1  # the connection is still there

    def test_batch_larger_than_the_packet_is_queued_in_several_inserts(self) -> None:
        messages = [plain() for _ in range(4)]
        for message in messages:
            message.attach("part.bin", b"\x01" * (self.packet() // 3), "application/octet-stream")
        assert self.queue(*messages) == 4
        self.assert_queued(4)


@pytest.mark.django_db
class TestBatches(Queueing):
    """One bad message in a batch: nothing of the batch is queued."""

    def bad_messages(self) -> list[tuple[str, type[MailerError], Callable[[EmailMessage], None]]]:
        def subject(m: EmailMessage) -> None:
            m.subject = "a\nb"

        def address(m: EmailMessage) -> None:
            m.cc = [None]  # type: ignore[list-item]

        def recipients(m: EmailMessage) -> None:
            m.bcc = "x@example.com"  # type: ignore[assignment]

        def nul(m: EmailMessage) -> None:
            m.body = "\x00"

        def size(m: EmailMessage) -> None:
            m.attach("huge.bin", b"\x00" * 11_000_000, "application/octet-stream")

        return [
            ("subject", InvalidHeader, subject),
            ("address", InvalidAddress, address),
            ("recipients", InvalidRecipientList, recipients),
            ("nul", InvalidMessage, nul),
            ("size", MessageTooLarge, size),
        ]

    @pytest.mark.parametrize("case", range(5), ids=["subject", "address", "list", "nul", "size"])
    def test_backend_send_messages(self, case: int, queueing_backend: Any) -> None:
        _, exception, spoil = self.bad_messages()[case]
        batch = [plain(), plain(), plain()]
        spoil(batch[2])  # the last one: the first two were fine
        with self.refused_at_enqueue(exception):
            queueing_backend.send_messages(batch)

    @pytest.mark.parametrize("case", range(5), ids=["subject", "address", "list", "nul", "size"])
    def test_enqueue(self, case: int) -> None:
        _, exception, spoil = self.bad_messages()[case]
        batch = [plain(), plain(), plain()]
        spoil(batch[1])
        with self.refused_at_enqueue(exception):
            Message.objects.enqueue(batch)

    def test_send_mass_mail(self) -> None:
        with self.refused_at_enqueue(InvalidHeader):
            mailer.send_mass_mail(
                [
                    ("Fine", "Body", "a@example.com", ["b@example.com"]),
                    ("Also fine", "Body", "a@example.com", ["c@example.com"]),
                    ("Not\r\nfine", "Body", "a@example.com", ["d@example.com"]),
                ]
            )

    def test_django_send_mass_mail_through_the_backend(self) -> None:
        from django.core.mail import send_mass_mail

        with self.refused_at_enqueue(InvalidAddress):
            send_mass_mail(
                [
                    ("Fine", "Body", "a@example.com", ["b@example.com"]),
                    ("Bad", "Body", "a@example.com", ["not an address"]),
                ]
            )

    def test_a_good_batch_is_queued_whole(self, queueing_backend: Any) -> None:
        assert queueing_backend.send_messages([plain(), plain(), plain()]) == 3
        self.assert_queued(3)


@pytest.mark.django_db(transaction=True)
class TestTransactions(Queueing):
    def test_rolled_back_transaction_queues_nothing(self) -> None:
        class Abandon(Exception):
            pass

        with pytest.raises(Abandon), transaction.atomic():
            assert mailer.send_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
            assert plain().send() == 1
            self.assert_queued(2)  # visible inside the transaction...
            raise Abandon
        self.assert_queue_empty()  # ...and gone with it

    def test_refusal_leaves_the_callers_transaction_usable(self) -> None:
        """Validation runs before any SQL: the transaction is not broken (PostgreSQL)."""
        with transaction.atomic():
            assert plain().send() == 1
            with pytest.raises(InvalidHeader):
                mailer.send_mail("Bad\nsubject", "Body", "a@example.com", ["b@example.com"])
            assert plain().send() == 1
        self.assert_queued(2)


class TestExceptions:
    @pytest.mark.parametrize(
        "exception",
        [InvalidHeader, InvalidAddress, InvalidRecipientList, MessageTooLarge, InvalidMessage],
    )
    def test_every_refusal_is_a_mailer_error_and_a_value_error(
        self, exception: type[Exception]
    ) -> None:
        assert issubclass(exception, MailerError)
        assert issubclass(exception, ValueError)
        assert issubclass(exception, InvalidMessage)

"""A stored message is rebuilt into the MIME Django would have sent for the original.

The round trip under test is ``storage.decode(storage.encode(message))``.
"The same MIME" is checked byte for byte: both messages are rendered with
``mailer.compat.render`` (what Django's SMTP backend sends), with the same
Date and Message-ID headers and MIME boundaries that depend only on the
content (see ``rendered``).
"""

from __future__ import annotations

import datetime
import email
import email.generator
import email.policy
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Iterator
from email.encoders import encode_base64
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.text import MIMEText
from typing import Any, TypeVar
from unittest import mock

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from hypothesis import currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from mailer import compat
from mailer.exceptions import MailerWarning, UndecodableMessage
from mailer.message import codec as storage

from .samples import GIF

DATE = "Mon, 01 Jan 2024 12:00:00 +0000"
M = TypeVar("M", bound=EmailMessage)
EXAMPLES = settings(max_examples=100, deadline=None)


# -- Rendering ---------------------------------------------------------------------


def _content_boundary(cls: type, text: str | bytes | None = None) -> str:
    """A MIME boundary that depends only on what it separates (stands in for a random one)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(text or b"").hexdigest()
    return f"==mailer-test-{digest[:24]}=="


def rendered(message: EmailMessage, *, utf8: bool = False) -> bytes:
    """The bytes Django's SMTP backend sends for ``message``, with reproducible boundaries."""
    with mock.patch.object(
        email.generator.Generator, "_make_boundary", classmethod(_content_boundary)
    ):
        return compat.render(message, utf8=utf8)


def pinned(message: M, tag: str = "1") -> M:
    """Give ``message`` the fixed Date and Message-ID Django would otherwise invent."""
    message.extra_headers.setdefault("Date", DATE)
    message.extra_headers.setdefault("Message-ID", f"<pinned-{tag}@example.com>")
    return message


def round_trip(message: EmailMessage) -> EmailMessage:
    """Store ``message`` as the queue does and rebuild it from the stored text."""
    data = storage.encode(message)
    if currently_in_test_context():
        note(f"stored: {data[:2000]}")
    assert isinstance(data, str)
    json.loads(data)  # it is JSON text: what a TextField can hold
    return storage.decode(data)


def assert_same_mime(original: EmailMessage) -> EmailMessage:
    """Round-trip ``original``; both renderings (plain and SMTPUTF8) must be byte-identical."""
    before = {utf8: rendered(original, utf8=utf8) for utf8 in (False, True)}
    rebuilt = round_trip(original)
    for utf8, expected in before.items():
        got = rendered(rebuilt, utf8=utf8)
        assert got == expected, _diff(expected, got)
    # Storing a message leaves it as it was.
    assert rendered(original) == before[False]
    assert rebuilt.recipients() == original.recipients()
    assert rebuilt.bcc == original.bcc
    return rebuilt


def _diff(expected: bytes, got: bytes) -> str:
    import difflib

    lines = difflib.unified_diff(
        expected.decode("utf-8", "replace").splitlines(),
        got.decode("utf-8", "replace").splitlines(),
        "Django would send",
        "rebuilt sends",
        lineterm="",
        n=2,
    )
    return "MIME differs:\n" + "\n".join(list(lines)[:80])


def header_names(data: bytes) -> set[str]:
    """Lowercased names of every header of every part of the MIME ``data``."""
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return {name.lower() for part in parsed.walk() for name in part}


# -- Strategies ---------------------------------------------------------------------

# Header text: anything but line breaks, control characters and lone surrogates
# (Django refuses those in headers; validation refuses them at enqueue).
HEADER_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
LATIN1_HEADER_CHARS = st.characters(max_codepoint=0xFF, blacklist_categories=("Cs", "Cc"))
BODY_CHARS = st.characters(blacklist_categories=("Cs",))
LATIN1_BODY_CHARS = st.characters(max_codepoint=0xFF, blacklist_categories=("Cs",))

LOCAL_PARTS = st.from_regex(r"[a-z0-9]{1,8}(?:[._+-][a-z0-9]{1,8}){0,2}", fullmatch=True)
UTF8_LOCAL_PARTS = st.sampled_from(["jörg", "δοκιμή", "用户", "zoë.åberg", "пример"])
DOMAINS = st.sampled_from(["example.com", "mail.example.org", "exämple.de", "例え.jp"])
MIME_TYPES_BINARY = st.sampled_from(
    ["application/octet-stream", "application/pdf", "image/png", "audio/ogg"]
)
MIME_TYPES_TEXT = st.sampled_from(["text/plain", "text/csv", "text/calendar", "text/x-diff"])
EXTRA_HEADER_NAMES = st.sampled_from(
    ["X-Campaign", "X-Tag", "Keywords", "Comments", "List-Id", "X-Entity-Ref-ID"]
)


def long_lines(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Text with lines longer than SMTP's 998-octet limit (Django must fold or encode them)."""
    return st.builds(
        lambda char, count, tail: char * count + tail,
        chars,
        st.integers(min_value=990, max_value=1400),
        st.text(chars, max_size=20),
    )


def texts(chars: st.SearchStrategy[str], max_size: int = 200) -> st.SearchStrategy[str]:
    """Short text, long lines, or lines of both joined with newlines."""
    return st.one_of(
        st.text(chars, max_size=max_size),
        long_lines(chars),
        st.lists(st.one_of(st.text(chars, max_size=80), long_lines(chars)), max_size=4).map(
            "\n".join
        ),
    )


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def addresses(draw: st.DrawFn, chars: st.SearchStrategy[str], utf8: bool = False) -> str:
    """``local@domain`` or ``"Display Name" <local@domain>``."""
    local = draw(st.one_of(LOCAL_PARTS, UTF8_LOCAL_PARTS) if utf8 else LOCAL_PARTS)
    address = f"{local}@{draw(DOMAINS)}"
    name = draw(st.one_of(st.none(), st.text(chars, min_size=1, max_size=40)))
    return address if name is None else f"{quoted(name)} <{address}>"


@st.composite
def messages(draw: st.DrawFn, utf8_addresses: bool = False) -> EmailMessage:
    """An EmailMessage or EmailMultiAlternatives using any of the plain fields."""
    encoding = draw(st.sampled_from([None, "utf-8", "iso-8859-1"]))
    latin1 = encoding == "iso-8859-1"
    header_chars = LATIN1_HEADER_CHARS if latin1 else HEADER_CHARS
    body_chars = LATIN1_BODY_CHARS if latin1 else BODY_CHARS
    address = addresses(header_chars, utf8_addresses)
    cls = draw(st.sampled_from([EmailMessage, EmailMultiAlternatives]))
    message = cls(
        draw(st.one_of(st.text(header_chars, max_size=120), long_lines(header_chars))),
        draw(texts(body_chars)),
        draw(address),
        draw(st.lists(address, min_size=1, max_size=3)),
        cc=draw(st.lists(address, max_size=2)),
        bcc=draw(st.lists(address, max_size=2)),
        reply_to=draw(st.lists(address, max_size=2)),
        headers=draw(st.dictionaries(EXTRA_HEADER_NAMES, st.text(header_chars, max_size=100))),
    )
    if draw(st.booleans()):
        message.extra_headers["To"] = ", ".join(draw(st.lists(address, min_size=1, max_size=2)))
    message.encoding = encoding
    message.content_subtype = draw(st.sampled_from(["plain", "html"]))
    message._test_text = body_chars  # type: ignore[attr-defined]
    return pinned(message)


def _quietly(attach: Callable[[], None]) -> None:
    # DJANGO_COMPAT(<6.0): Django 6 deprecates email.mime attachments (still supported).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "MIMEBase attachments are deprecated")
        attach()


@st.composite
def attachments(draw: st.DrawFn, message: EmailMessage) -> None:
    """Attach one attachment of a kind Django supports to ``message``."""
    chars = message._test_text  # type: ignore[attr-defined]
    filename = draw(
        st.one_of(
            st.none(),
            st.text(HEADER_CHARS, min_size=1, max_size=60),
            st.sampled_from(["Übersicht – März.txt", "日本語.pdf", "a b;c=d.txt", 'q"uote.bin']),
        )
    )
    kinds = [
        "binary",
        "text",
        "text-as-bytes",
        "guessed",
        "rfc822",
        "rfc822-bytes",
        "mime-image",
        "mime-text",
        "mime-base",
    ]
    if compat.MODERN_EMAIL:  # DJANGO_COMPAT(<6.0): MIMEPart attachments are new in Django 6.
        kinds += ["mime-part-bytes", "mime-part-text"]
    kind = draw(st.sampled_from(kinds))
    note(f"attachment: {kind} {filename!r}")
    if kind == "binary":
        message.attach(filename, draw(st.binary(max_size=3000)), draw(MIME_TYPES_BINARY))
    elif kind == "text":
        message.attach(filename, draw(texts(chars)), draw(MIME_TYPES_TEXT))
    elif kind == "text-as-bytes":
        encoded = draw(texts(chars)).encode("utf-8")
        message.attach(filename, encoded, draw(MIME_TYPES_TEXT))
    elif kind == "guessed":
        stem = draw(st.text(HEADER_CHARS, min_size=1, max_size=20))
        suffix = draw(st.sampled_from([".txt", ".pdf", ".png", ".csv", ".unknownext", ""]))
        guessed: str | bytes = draw(st.one_of(texts(chars), st.binary(max_size=500)))
        message.attach(stem + suffix, guessed)  # mimetype=None: guessed from the name
    elif kind in ("rfc822", "rfc822-bytes"):
        inner = pinned(
            EmailMessage(
                draw(st.text(HEADER_CHARS, max_size=60)),
                draw(texts(BODY_CHARS)),
                "inner@example.com",
                ["Zoë <zoe@example.com>"],
            ),
            tag="inner",
        )
        content: Any = inner if kind == "rfc822" else inner.message().as_bytes()
        message.attach(filename, content, "message/rfc822")
    elif kind == "mime-image":
        image = MIMEImage(GIF, "gif")
        image.add_header("Content-ID", f"<{draw(LOCAL_PARTS)}@example.com>")
        image.add_header("Content-Disposition", "inline", filename=filename or "logo.gif")
        _quietly(lambda: message.attach(image))
    elif kind == "mime-text":
        part = MIMEText(draw(st.text(BODY_CHARS, max_size=300)), "plain", "utf-8")
        if filename:
            part.add_header("Content-Disposition", "attachment", filename=filename)
        _quietly(lambda: message.attach(part))
    elif kind == "mime-base":
        base = MIMEBase("application", "vnd.example")
        base.set_payload(draw(st.binary(max_size=500)))
        encode_base64(base)
        base.add_header("Content-Disposition", "attachment", filename=filename or "x.bin")
        printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
        base.add_header("X-Note", draw(st.text(printable, max_size=120)))
        _quietly(lambda: message.attach(base))
    else:
        from email.message import MIMEPart

        modern = MIMEPart()
        if kind == "mime-part-bytes":
            modern.set_content(
                draw(st.binary(max_size=500)),
                maintype="image",
                subtype="png",
                filename=filename,
                cid=f"<{draw(LOCAL_PARTS)}@example.com>",
                disposition=draw(st.sampled_from(["inline", "attachment"])),
            )
        else:
            modern.set_content(draw(st.text(BODY_CHARS, max_size=300)), filename=filename)
        modern["X-Note"] = draw(st.text(HEADER_CHARS, max_size=100))
        message.attach(modern)


@st.composite
def messages_with_parts(draw: st.DrawFn) -> EmailMessage:
    """A message with alternatives (if it can have them) and attachments."""
    message = draw(messages())
    chars = message._test_text  # type: ignore[attr-defined]
    if isinstance(message, EmailMultiAlternatives):
        for _ in range(draw(st.integers(0, 3))):
            content: Any
            kinds = ["text/html", "text/x-amp-html", "application/json", "application/pdf"]
            if message.encoding == "iso-8859-1":
                # Django 6 recodes bytes alternatives from UTF-8 to the message's charset.
                kinds.remove("application/pdf")
            mimetype = draw(st.sampled_from(kinds))
            if mimetype.startswith("text/"):
                content = draw(texts(chars))
            elif mimetype == "application/json":
                content = json.dumps(draw(st.text(chars, max_size=50)))
            else:
                content = draw(st.binary(max_size=500))
            message.attach_alternative(content, mimetype)
    for _ in range(draw(st.integers(0, 3))):
        draw(attachments(message))
    return message


# JSON values as an ESP's extra settings might hold them, with the tagged kinds too.
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
STORED_VALUES = st.recursive(
    st.one_of(
        JSON_LEAVES,
        st.binary(max_size=40),
        st.datetimes(timezones=st.just(datetime.UTC)),
        st.datetimes(),
        st.dates(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["$bytes", "$date", "$dict", "$x"])),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


class AnymailStyleMessage(EmailMultiAlternatives):
    """Mimics django-anymail's AnymailMessage: ESP options as attributes, set in __init__."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tags: list[str] = kwargs.pop("tags", [])
        self.metadata: dict[str, Any] = kwargs.pop("metadata", {})
        self.merge_data: dict[str, Any] = kwargs.pop("merge_data", {})
        self.esp_extra: dict[str, Any] = kwargs.pop("esp_extra", {})
        self.send_at: datetime.datetime | None = kwargs.pop("send_at", None)
        self.track_clicks: bool | None = kwargs.pop("track_clicks", None)
        self.anymail_status = SendStatus()
        super().__init__(*args, **kwargs)


class SendStatus:
    """Like AnymailStatus: not JSON, and equal to a fresh one until the message is sent."""

    def __init__(self) -> None:
        self.message_id: str | None = None
        self.recipients: dict[str, Any] = {}


ANYMAIL_STYLE = f"{AnymailStyleMessage.__module__}.AnymailStyleMessage"


class UnlistedMessage(EmailMultiAlternatives):
    """A subclass nobody listed in MAILER_MESSAGE_CLASSES."""


class UnlistedPlainMessage(EmailMessage):
    """An EmailMessage subclass nobody listed."""


# -- Properties: the same MIME ---------------------------------------------------------


@pytest.mark.no_database  # thousands of generated messages: once per Django version is enough
class TestSameMime:
    @EXAMPLES
    @given(messages())
    def test_headers_and_bodies(self, message: EmailMessage) -> None:
        """Unicode subjects, bodies and names, long lines, charsets, HTML bodies, extra headers."""
        assert_same_mime(message)

    @settings(max_examples=50, deadline=None)
    @given(messages(utf8_addresses=True))
    def test_addresses_with_non_ascii_local_parts(self, message: EmailMessage) -> None:
        """Addresses only SMTPUTF8 can carry are rendered as Django renders them."""
        assume_renders(message)
        assert_same_mime(message)

    @EXAMPLES
    @given(messages_with_parts())
    def test_alternatives_and_attachments(self, message: EmailMessage) -> None:
        assert_same_mime(message)

    @settings(max_examples=30, deadline=None)
    @given(messages())
    def test_bcc_is_delivered_but_never_a_header(self, message: EmailMessage) -> None:
        message.bcc = ["Hidden Person <hidden.bcc@example.com>"]
        rebuilt = round_trip(message)
        assert "Hidden Person <hidden.bcc@example.com>" in rebuilt.recipients()
        for utf8 in (False, True):
            data = rendered(rebuilt, utf8=utf8)
            assert "bcc" not in header_names(data)
            assert b"hidden.bcc" not in data


def assume_renders(message: EmailMessage) -> None:
    """Non-ASCII local parts cannot always be put in 7-bit headers; Django then refuses too."""
    from hypothesis import assume

    try:
        rendered(message)
    except Exception as error:
        note(f"Django cannot render this without SMTPUTF8: {error!r}")
        rebuilt = round_trip(message)
        with pytest.raises(type(error)):
            rendered(rebuilt)
        assume(False)


# -- Examples: what each kind of content becomes ---------------------------------------


def _plain(to: list[str] | None = None, **kwargs: Any) -> EmailMultiAlternatives:
    """A small message with a non-ASCII subject, pinned Date and Message-ID."""
    return pinned(
        EmailMultiAlternatives(
            "Grüße", "Body", "Sender <sender@example.com>", to or ["to@example.com"], **kwargs
        )
    )


class TestContent:
    def test_html_body(self) -> None:
        message = _plain()
        message.body = "<p>Grüße</p>"
        message.content_subtype = "html"
        rebuilt = assert_same_mime(message)
        assert rebuilt.content_subtype == "html"
        assert b"Content-Type: text/html" in rendered(rebuilt)

    def test_iso_8859_1_encoding(self) -> None:
        message = _plain()
        message.body = "Crème brûlée"
        message.encoding = "iso-8859-1"
        message.attach("menu.txt", "Café", "text/plain")
        rebuilt = assert_same_mime(message)
        assert rebuilt.encoding == "iso-8859-1"
        assert b'charset="iso-8859-1"' in rendered(rebuilt)

    def test_message_rfc822_given_as_a_django_message(self) -> None:
        inner = pinned(EmailMessage("Ïnner", "Forwarded", "a@example.com", ["b@example.com"]))
        message = _plain()
        message.attach("forwarded.eml", inner, "message/rfc822")
        rebuilt = assert_same_mime(message)
        content = rebuilt.attachments[0][1]
        assert isinstance(content, EmailMessage)
        assert content.subject == "Ïnner"

    def test_message_rfc822_given_as_bytes(self) -> None:
        inner = pinned(EmailMessage("Inner", "Forwarded", "a@example.com", ["b@example.com"]))
        message = _plain()
        message.attach("forwarded.eml", inner.message().as_bytes(), "message/rfc822")
        rebuilt = assert_same_mime(message)
        assert rebuilt.attachments[0][1] == inner.message().as_bytes()

    def test_message_rfc822_given_as_a_python_message(self) -> None:
        inner = email.message_from_string(
            "Subject: Inner\nFrom: a@example.com\n\nForwarded\n", policy=email.policy.default
        )
        message = _plain()
        message.attach("forwarded.eml", inner, "message/rfc822")
        rebuilt = assert_same_mime(message)
        assert rebuilt.attachments[0][1]["Subject"] == "Inner"

    def test_inline_image_keeps_its_content_id(self) -> None:
        image = MIMEImage(GIF, "gif")
        image.add_header("Content-ID", "<logo@example.com>")
        image.add_header("Content-Disposition", "inline", filename="lögo.gif")
        message = _plain()
        message.attach_alternative('<img src="cid:logo@example.com">', "text/html")
        _quietly(lambda: message.attach(image))
        rebuilt = assert_same_mime(message)
        part = rebuilt.attachments[0]
        assert isinstance(part, MIMEBase)
        assert part["Content-ID"] == "<logo@example.com>"
        assert part.get_payload(decode=True) == GIF

    @pytest.mark.parametrize("value", [" ", "  indented", " both ", "\tx", "", "a  b"])
    def test_mime_part_header_values_keep_their_blanks(self, value: str) -> None:
        """Parsers strip blanks after "Name:"; the stored part must not lose them."""
        base = MIMEBase("application", "vnd.example")
        base.set_payload(b"\x01")
        encode_base64(base)
        base.add_header("X-Note", value)
        message = _plain()
        _quietly(lambda: message.attach(base))
        if compat.MODERN_EMAIL:  # DJANGO_COMPAT(<6.0): MIMEPart attachments are new in Django 6.
            from email.message import MIMEPart

            modern = MIMEPart()
            modern.set_content(b"\x02", "application", "octet-stream")
            modern["X-Note"] = value
            message.attach(modern)
        assert_same_mime(message)

    # DJANGO_COMPAT(<6.0): Django 5.2 accepts only email.mime parts.
    @pytest.mark.modern_email
    def test_modern_mime_part_with_non_ascii_file_name(self) -> None:
        from email.message import MIMEPart

        part = MIMEPart()
        part.set_content(GIF, "image", "gif", cid="<c1@example.com>", filename="Bïld.gif")
        message = _plain(to=["jörg@exämple.de"])
        message.attach(part)
        rebuilt = assert_same_mime(message)
        stored = rebuilt.attachments[0]
        assert isinstance(stored, MIMEPart)
        assert stored.get_filename() == "Bïld.gif"
        # With SMTPUTF8 the file name travels as UTF-8, exactly as Django sends it.
        assert 'filename="Bïld.gif"'.encode() in rendered(rebuilt, utf8=True)

    def test_binary_and_non_ascii_file_names(self) -> None:
        message = _plain()
        message.attach("Übersicht – März.pdf", bytes(range(256)) * 4, "application/pdf")
        message.attach("日本語.txt", "テキスト\n", "text/plain")
        rebuilt = assert_same_mime(message)
        assert rebuilt.attachments == message.attachments

    def test_mimetype_none_in_the_constructor_is_guessed(self) -> None:
        message = _plain(attachments=[("report.csv", "a,b\n", None), ("blob", b"\x00", None)])
        rebuilt = assert_same_mime(message)
        assert [a.mimetype for a in rebuilt.attachments] == ["text/csv", "application/octet-stream"]

    def test_mimetype_none_put_in_attachments_directly_is_delivered_as_attach_would(
        self,
    ) -> None:
        """Django itself cannot render such a tuple; the queue stores what attach() gives."""
        direct = _plain()
        direct.attachments.append(("notes.txt", b"caf\xc3\xa9", None))
        with pytest.raises(AttributeError):
            rendered(direct)  # Django: 'NoneType' object has no attribute 'split'
        attached = _plain()
        attached.attach("notes.txt", b"caf\xc3\xa9")
        assert rendered(round_trip(direct)) == rendered(attached)

    def test_alternatives_that_are_not_text(self) -> None:
        message = _plain(alternatives=[("<p>x</p>", "text/html")])
        message.attach_alternative(b"\x89PNG\r\n\x1a\n\x00", "image/png")
        message.attach_alternative('{"a": 1}', "application/json")
        rebuilt = assert_same_mime(message)
        assert rebuilt.alternatives == message.alternatives

    def test_extra_headers_of_every_kind(self) -> None:
        message = _plain(
            headers={
                "X-Unicode": "spring-été ✓",
                "X-Number": "42",
                "List-Unsubscribe": "<mailto:unsubscribe@example.com>",
                "Reply-To": "Réponse <reply@example.com>",
                "From": "Override Ñame <override@example.com>",
            }
        )
        rebuilt = assert_same_mime(message)
        assert rebuilt.extra_headers == message.extra_headers


# -- Extra attributes and classes ---------------------------------------------------------


class TestAttributes:
    @EXAMPLES
    @given(
        tags=st.lists(st.text(max_size=20), max_size=4),
        metadata=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
        merge_data=st.dictionaries(
            st.emails(), st.dictionaries(st.text(max_size=8), JSON_VALUES), max_size=3
        ),
        esp_extra=st.dictionaries(st.text(max_size=10), STORED_VALUES, max_size=4),
        send_at=st.one_of(
            st.none(),
            # A year away from the ends of datetime's range: converting to UTC must not overflow.
            st.datetimes(
                min_value=datetime.datetime(2, 1, 1),
                max_value=datetime.datetime(9998, 12, 31),
                timezones=st.timezones(),
            ),
        ),
    )
    def test_anymail_attributes_survive(
        self,
        tags: list[str],
        metadata: dict[str, str],
        merge_data: dict[str, Any],
        esp_extra: dict[str, Any],
        send_at: datetime.datetime | None,
    ) -> None:
        with settings_override(MAILER_MESSAGE_CLASSES=[ANYMAIL_STYLE]):
            message = pinned(
                AnymailStyleMessage(
                    "Hi",
                    "Body",
                    "a@example.com",
                    ["b@example.com"],
                    tags=tags,
                    metadata=metadata,
                    merge_data=merge_data,
                    esp_extra=esp_extra,
                    send_at=send_at,
                )
            )
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nothing here may be dropped
                rebuilt = round_trip(message)
        assert type(rebuilt) is AnymailStyleMessage
        assert rebuilt.tags == tags
        assert rebuilt.metadata == metadata
        assert rebuilt.merge_data == merge_data
        assert rebuilt.esp_extra == _lists_for_tuples(esp_extra)
        if send_at is None:
            assert rebuilt.send_at is None
        else:
            # The same instant and offset; the zone itself is kept as a fixed offset.
            assert rebuilt.send_at.astimezone(datetime.UTC) == send_at.astimezone(datetime.UTC)
            assert rebuilt.send_at.utcoffset() == send_at.utcoffset()
        assert rendered(rebuilt) == rendered(message)

    def test_dictionaries_that_look_like_tags_stay_dictionaries(self) -> None:
        message = _plain()
        message.metadata = {"$bytes": "not base64!", "nested": {"$datetime": "soon"}}  # type: ignore[attr-defined]
        message.esp_extra = {"$dict": {"$date": "x"}}  # type: ignore[attr-defined]
        rebuilt = round_trip(message)
        assert rebuilt.metadata == message.metadata  # type: ignore[attr-defined]
        assert rebuilt.esp_extra == message.esp_extra  # type: ignore[attr-defined]

    def test_bytes_and_dates_keep_their_types(self) -> None:
        message = _plain()
        when = datetime.datetime(2030, 5, 17, 9, 30, tzinfo=datetime.UTC)
        message.send_at = when  # type: ignore[attr-defined]
        message.esp_extra = {"blob": b"\x00\xff", "day": datetime.date(2030, 5, 17)}  # type: ignore[attr-defined]
        rebuilt = round_trip(message)
        assert rebuilt.send_at == when  # type: ignore[attr-defined]
        assert rebuilt.send_at.tzinfo is not None  # type: ignore[attr-defined]
        assert rebuilt.esp_extra == message.esp_extra  # type: ignore[attr-defined]

    def test_listed_subclass_is_rebuilt_as_itself(self, settings: Any) -> None:
        settings.MAILER_MESSAGE_CLASSES = [ANYMAIL_STYLE]
        message = pinned(AnymailStyleMessage("Hi", "Body", "a@example.com", ["b@example.com"]))
        message.track_clicks = True
        stored = json.loads(storage.encode(message))
        assert stored["class"] == ANYMAIL_STYLE
        # Defaults a fresh instance has are not stored, not even the status object.
        assert stored["attrs"] == {"track_clicks": True}
        rebuilt = storage.decode(storage.encode(message))
        assert type(rebuilt) is AnymailStyleMessage
        assert rebuilt.track_clicks is True
        assert isinstance(rebuilt.anymail_status, SendStatus)

    @pytest.mark.parametrize(
        ("cls", "fallback"),
        [(UnlistedMessage, EmailMultiAlternatives), (UnlistedPlainMessage, EmailMessage)],
    )
    def test_unlisted_class_falls_back_to_djangos_with_a_warning(
        self, cls: type[EmailMessage], fallback: type[EmailMessage]
    ) -> None:
        message = pinned(cls("Hi", "Body", "a@example.com", ["b@example.com"]))
        message.tags = ["kept"]  # type: ignore[attr-defined]
        for _ in range(2):  # every time, not only the first
            with pytest.warns(MailerWarning, match="not in MAILER_MESSAGE_CLASSES"):
                data = storage.encode(message)
        rebuilt = storage.decode(data)
        assert type(rebuilt) is fallback
        assert rebuilt.tags == ["kept"]  # type: ignore[attr-defined]
        assert rendered(rebuilt) == rendered(message)

    def test_class_no_longer_allowed_is_rebuilt_as_django_class_with_a_warning(
        self, settings: Any
    ) -> None:
        settings.MAILER_MESSAGE_CLASSES = [ANYMAIL_STYLE]
        data = storage.encode(pinned(AnymailStyleMessage("Hi", "Body", "a@example.com", ["b@x"])))
        settings.MAILER_MESSAGE_CLASSES = []
        with pytest.warns(MailerWarning, match="not available or not allowed"):
            rebuilt = storage.decode(data)
        assert type(rebuilt) is EmailMultiAlternatives

    def test_class_that_cannot_be_imported_is_rebuilt_as_django_class_with_a_warning(
        self, settings: Any
    ) -> None:
        settings.MAILER_MESSAGE_CLASSES = ["tests.nowhere.GoneMessage"]
        doc = json.loads(storage.encode(_plain()))
        doc["class"] = "tests.nowhere.GoneMessage"
        with pytest.warns(MailerWarning, match="GoneMessage"):
            rebuilt = storage.decode(json.dumps(doc))
        assert type(rebuilt) is EmailMultiAlternatives

    def test_attributes_that_are_not_json_are_dropped_with_a_warning(self) -> None:
        message = _plain()
        message.tags = ["kept"]  # type: ignore[attr-defined]
        message.callback = print  # type: ignore[attr-defined]
        message.weird = {1: "int keys"}  # type: ignore[attr-defined]
        message.broken_text = "lone \udc80 surrogate"  # type: ignore[attr-defined]
        with pytest.warns(MailerWarning) as caught:
            rebuilt = round_trip(message)
        dropped = " ".join(str(w.message) for w in caught)
        for name in ("callback", "weird", "broken_text"):
            assert f"'{name}'" in dropped
            assert not hasattr(rebuilt, name)
        assert rebuilt.tags == ["kept"]  # type: ignore[attr-defined]


def _lists_for_tuples(value: Any) -> Any:
    """What JSON keeps of ``value``: tuples come back as lists."""
    if isinstance(value, list | tuple):
        return [_lists_for_tuples(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists_for_tuples(v) for k, v in value.items()}
    return value


class settings_override:
    """override_settings usable inside a hypothesis test (no function-scoped fixture)."""

    def __init__(self, **values: Any) -> None:
        from django.test import override_settings

        self._override = override_settings(**values)

    def __enter__(self) -> None:
        self._override.enable()

    def __exit__(self, *exc: object) -> None:
        self._override.disable()


# -- The stored format ----------------------------------------------------------------------


def _documented_keys() -> set[str]:
    """Every key shown in the format description of storage's docstring."""
    doc = storage.__doc__ or ""
    return set(re.findall(r'"(\$?[a-z_]+)":', doc))


class TestFormat:
    def test_every_stored_key_is_documented(self) -> None:
        inner = pinned(EmailMessage("Inner", "x", "a@example.com", ["b@example.com"]))
        python_message = email.message_from_string("Subject: x\n\nbody\n")
        message = _plain(cc=["c@example.com"], bcc=["d@example.com"], reply_to=["e@x.com"])
        message.attach_alternative("<p>x</p>", "text/html")
        message.attach("a.bin", b"\x00", "application/octet-stream")
        message.attach("fwd.eml", inner, "message/rfc822")
        message.attach("py.eml", python_message, "message/rfc822")
        _quietly(lambda: message.attach(MIMEImage(GIF, "gif")))
        message.content_subtype = "html"
        message.encoding = "utf-8"
        message.tags = [{"$x": 1}]  # type: ignore[attr-defined]
        message.when = datetime.date(2030, 1, 1)  # type: ignore[attr-defined]
        message.at = datetime.datetime(2030, 1, 1, 1, 1)  # type: ignore[attr-defined]

        documented = _documented_keys()
        used: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                used.update(k for k in value if k not in message.extra_headers)
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        doc = storage.to_document(message)
        walk({k: v for k, v in doc.items() if k != "attrs"})
        walk(doc["attrs"]["tags"])
        walk([doc["attrs"]["when"], doc["attrs"]["at"]])
        used.discard("$x")  # the caller's own key, inside "$dict"
        assert used <= documented, f"undocumented keys: {sorted(used - documented)}"
        assert {"$dict", "$message", "$part", "$bytes", "$date", "$datetime"} <= used

    def test_optional_keys_are_left_out(self) -> None:
        doc = storage.to_document(
            pinned(EmailMessage("s", "b", "a@example.com", ["b@example.com"]))
        )
        assert set(doc) == {
            "v",
            "class",
            "subject",
            "body",
            "from_email",
            "to",
            "cc",
            "bcc",
            "reply_to",
            "headers",
        }
        assert doc["v"] == storage.FORMAT_VERSION == 1


# -- Data that is not ours -----------------------------------------------------------------


def _stored() -> dict[str, Any]:
    message = _plain()
    message.attach("a.bin", b"\x00\x01", "application/octet-stream")
    _quietly(lambda: message.attach(MIMEImage(GIF, "gif")))
    result: dict[str, Any] = json.loads(storage.encode(message))
    return result


def _corruptions() -> Iterator[tuple[str, Any]]:
    yield "not json", "{not json"
    yield "not utf-8", b'{"v": 1, "subject": "\xc3("}'
    yield "a list", "[1, 2]"
    yield "a string", '"hello"'
    yield "empty", ""
    for version in (2, 0, "1", True, None, 1.5):
        doc = _stored()
        doc["v"] = version
        yield f"version {version!r}", json.dumps(doc)
    doc = _stored()
    del doc["v"]
    yield "no version", json.dumps(doc)
    for key in ("subject", "to", "headers", "from_email", "body"):
        doc = _stored()
        del doc[key]
        yield f"no {key}", json.dumps(doc)
    bad_values: list[tuple[str, Any]] = [
        ("to", "a@example.com"),
        ("to", [1, 2]),
        ("headers", ["X-A", "b"]),
        ("subject", 7),
        ("attachments", {"a": 1}),
        ("attachments", ["plain string"]),
        ("attachments", [{"mime": "%%% not base64 %%%", "policy": "compat32"}]),
        ("attachments", [{"mime": "", "policy": "mystery"}]),
        ("attachments", [{"filename": "a", "mimetype": "text/plain"}]),
        ("attachments", [{"filename": "a", "mimetype": "x/y", "content": {"$bytes": "***"}}]),
        ("attachments", [{"filename": "a", "mimetype": "x/y", "content": {"$what": "x"}}]),
        ("attachments", [{"filename": "a", "mimetype": "x/y", "content": {"$message": {"v": 9}}}]),
        ("alternatives", [["<p>", "text/html", "extra"]]),
        ("alternatives", "nope"),
        ("attrs", [1]),
        ("attrs", {"when": {"$datetime": "not a date"}}),
        ("attrs", {"when": {"$date": 20300101}}),
        ("class", 42),
    ]
    for key, value in bad_values:
        doc = _stored()
        doc[key] = value
        yield f"{key}={value!r:.60}", json.dumps(doc)


class TestUndecodable:
    @pytest.mark.parametrize(("what", "data"), list(_corruptions()), ids=lambda v: str(v)[:40])
    def test_corrupt_data_raises_undecodable_message(self, what: str, data: Any) -> None:
        with pytest.raises(UndecodableMessage):
            storage.decode(data)

    def test_undecodable_message_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="format version 2"):
            storage.decode(json.dumps({**_stored(), "v": 2}))

    def test_intact_data_decodes(self) -> None:
        """The corruptions above start from data that decodes."""
        assert storage.decode(json.dumps(_stored())).subject == "Grüße"

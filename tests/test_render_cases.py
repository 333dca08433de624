"""What the renderer sends in each case the docs name, and what it leaves to Django.

Each test reads like a sentence of ``mailer.message.render``'s description;
``RenderAssertions`` compares the renderer's bytes with Django's (see
``tests/test_render.py`` for the properties over generated messages).
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import os
import re
from email.encoders import encode_base64
from email.message import Message as PythonMessage
from email.message import MIMEPart
from email.mime.base import MIMEBase
from email.mime.text import MIMEText
from email.parser import BytesParser
from typing import Any

import pytest
from django.core.mail import EmailMessage

from mailer import compat
from mailer.message.render import render, unsupported

from .assertions import RenderAssertions, djangos, stored
from .samples import (
    GIF,
    html,
    inline_image,
    non_ascii,
    non_ascii_everywhere,
    plain,
    with_attachment,
    with_attachments,
)
from .test_storage import AnymailStyleMessage, _quietly, pinned

pytestmark = pytest.mark.no_database


def reading(data: bytes) -> PythonMessage:
    return BytesParser(policy=email.policy.default).parsebytes(data)


class TestExamples(RenderAssertions):
    """Each a sentence of the docs: what the renderer sends, and that Django sends the same."""

    def test_a_plain_message(self) -> None:
        self.assert_renders_as_django(pinned(plain()))

    def test_text_and_html(self) -> None:
        self.assert_renders_as_django(pinned(html()))

    def test_attachments_and_an_inline_image(self) -> None:
        ours = self.assert_renders_as_django(pinned(with_attachments()))
        image = next(p for p in reading(ours).walk() if p.get_content_type() == "image/gif")
        assert image["Content-ID"] == "<logo>"
        assert image.get_payload(decode=True) == GIF

    def test_non_ascii_in_every_header_name_and_file_name(self) -> None:
        self.assert_renders_as_django(pinned(non_ascii()))
        self.assert_renders_as_django(pinned(non_ascii_everywhere()))

    def test_a_100_kb_attachment(self) -> None:
        self.assert_renders_as_django(pinned(with_attachment(os.urandom(100_000))))

    def test_a_long_non_ascii_display_name_reads_back_without_added_blanks(self) -> None:
        """Split over several encoded words, as RFC 2047 lets it, with no blank between."""
        name = "株式会社サンプル・カスタマーサポートセンター東京本社"
        message = pinned(plain(to=[f"{name} <support@example.jp>"]))
        ours = self.assert_renders_as_django(message)
        assert ours.count(b"=?utf-8?") > 1

    def test_a_subject_of_one_2000_character_word_is_folded_as_encoded_words(self) -> None:
        message = pinned(plain())
        message.subject = "x" * 2000
        ours = self.assert_renders_as_django(message)
        assert str(reading(ours)["Subject"]) == "x" * 2000

    def test_a_header_of_long_text_is_folded_at_its_blanks(self) -> None:
        message = pinned(plain())
        message.extra_headers["X-Note"] = " ".join(["word"] * 300)
        ours = self.assert_renders_as_django(message)
        assert b"=?" not in ours.split(b"\r\n\r\n")[0]

    def test_a_long_url_stays_one_word(self) -> None:
        """List-Unsubscribe of 200 characters: one line under 998 octets, not encoded."""
        url = "<https://example.com/unsubscribe?token=" + "a1" * 80 + ">"
        message = pinned(plain(headers={"List-Unsubscribe": url}))
        ours = self.assert_renders_as_django(message)
        assert str(reading(ours)["List-Unsubscribe"]).strip() == url
        assert b"=?" not in ours.split(b"\r\n\r\n")[0]

    @pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
    def test_every_line_end_is_sent_as_crlf(self, line_end: str) -> None:
        message = pinned(plain())
        message.body = line_end.join(["Grüße", "", "aus Köln", ""])
        self.assert_renders_as_django(message)

    @pytest.mark.parametrize("length", [78, 79, 998, 999, 5000])
    def test_long_body_lines_get_the_transfer_encoding_django_gives(self, length: int) -> None:
        """Django 5.2: quoted-printable past 998 octets; Django 6: past 78 (or base64)."""
        for text in ("a" * length, "é" * (length // 2), "日本" * (length // 6)):
            message = pinned(plain())
            message.body = f"{text}\nshort line\n"
            self.assert_renders_as_django(message)

    def test_an_empty_body(self) -> None:
        message = pinned(plain())
        message.body = ""
        self.assert_renders_as_django(message)
        message.attach("a.txt", "text", "text/plain")
        self.assert_renders_as_django(message)
        alternatives = pinned(html())
        alternatives.body = ""
        self.assert_renders_as_django(alternatives)

    def test_a_file_name_too_long_for_a_line_is_continued(self) -> None:
        """RFC 2231 continuations, never a character cut between two of them."""
        name = "Jahresübersicht " * 40 + "😀" * 40 + ".pdf"
        message = pinned(plain())
        message.attach(name, b"%PDF-1.4", "application/pdf")
        ours = self.assert_renders_as_django(message)
        assert b"filename*1*=" in ours
        attachment = next(reading(ours).iter_attachments())
        assert attachment.get_filename() == name

    @pytest.mark.parametrize(
        "name", ["a b;c=d.txt", 'q"uote.txt', "back\\slash.txt", "tab\there.txt", "Übersicht.txt"]
    )
    def test_file_names_with_specials_quotes_and_controls(self, name: str) -> None:
        message = pinned(plain())
        message.attach(name, "text\n", "text/plain")
        ours = self.assert_renders_as_django(message)
        assert next(reading(ours).iter_attachments()).get_filename() == name

    def test_idn_domains_are_sent_in_idna(self) -> None:
        message = pinned(plain(to=["Jörg <jorg@bücher.example>"]))
        message.from_email = "info@例え.jp"
        ours = self.assert_renders_as_django(message)
        assert b"jorg@xn--bcher-kva.example" in ours
        assert b"info@xn--r8jz45g.jp" in ours

    @pytest.mark.parametrize(
        "charset", ["utf-8", "UTF-8", "utf8", "iso-8859-1", "latin_1", "windows-1252", "us-ascii"]
    )
    def test_the_message_charset_decides_body_encoding_as_in_django(self, charset: str) -> None:
        message = pinned(plain())
        message.encoding = charset
        message.body = "Crème brûlée\n" if charset != "us-ascii" else "Creme brulee\n"
        message.attach("menu.txt", message.body, "text/plain")
        self.assert_renders_as_django(message)

    def test_a_charset_converted_for_sending_is_left_to_django_5_2(self) -> None:
        """Django 5.2 sends Shift JIS text as ISO-2022-JP; Django 6 as Shift JIS, as we do."""
        message = pinned(plain())
        message.encoding = "shift_jis"
        message.body = "日本語のテキスト\n"
        if compat.MODERN_EMAIL:
            self.assert_renders_as_django(message)
        else:  # DJANGO_COMPAT(<6.0)
            assert render(stored(message)) is None

    def test_many_recipients_are_folded_one_address_a_line_at_most(self) -> None:
        recipients = [f"Empfänger {i} <user{i}@exämple.de>" for i in range(200)]
        message = pinned(plain(to=recipients, cc=recipients[:50]))
        ours = self.assert_renders_as_django(message)
        assert max(map(len, ours.split(b"\r\n"))) <= 78

    def test_reply_to_cc_and_headers_that_replace_djangos(self) -> None:
        message = pinned(
            plain(
                cc=["cc@example.com"],
                reply_to=["Réponse <reply@example.com>"],
                headers={
                    "From": "Override Ñame <override@example.com>",
                    "To": "Shown <shown@example.com>",
                    "Sender": "Sender <sender@example.com>",
                    "X-Unicode": "spring-été ✓",
                },
            )
        )
        ours = self.assert_renders_as_django(message)
        parsed = reading(ours)
        assert parsed["From"].addresses[0].username == "override"
        assert parsed["To"].addresses[0].username == "shown"

    def test_forwarded_messages_of_every_kind(self) -> None:
        inner = pinned(EmailMessage("Ïnner", "Forwarded\n", "a@example.com", ["b@example.com"]))
        python_message = email.message_from_string(
            "Subject: Inner\nFrom: a@example.com\n\nForwarded\n", policy=email.policy.default
        )
        message = pinned(plain())
        message.attach("forwarded.eml", inner, "message/rfc822")
        message.attach("python.eml", python_message, "message/rfc822")
        message.attach(
            None, "Subject: Bytes\r\nFrom: c@example.com\r\n\nBody\r\n", "message/rfc822"
        )
        self.assert_renders_as_django(message)

    def test_mime_parts_as_stored(self) -> None:
        base = MIMEBase("application", "vnd.example")
        base.set_payload(b"\x00\x01\x02")
        encode_base64(base)
        base.add_header("Content-Disposition", "attachment", filename="blob.bin")
        message = pinned(plain())
        _quietly(lambda: message.attach(base))
        _quietly(lambda: message.attach(MIMEText("Grüße", "plain", "utf-8")))
        message.attach(inline_image())
        self.assert_renders_as_django(message)

    def test_a_mime_part_stored_on_django_6(self) -> None:
        """A MIMEPart attachment: sent as Django 6 sends it; Django 5.2 cannot render one."""
        part = MIMEPart()
        part.set_content(GIF, "image", "gif", filename="logo.gif", cid="<logo@example.com>")
        doc = stored(pinned(plain()))
        doc["attachments"] = [
            {"mime": base64.b64encode(part.as_bytes()).decode("ascii"), "policy": "default"}
        ]
        ours = render(doc)
        if compat.MODERN_EMAIL:
            assert ours is not None
            self.assert_same_reading(ours, djangos(doc))
        else:  # DJANGO_COMPAT(<6.0)
            assert ours is None

    def test_a_listed_subclass_without_its_own_rendering(self, settings: Any) -> None:
        settings.MAILER_MESSAGE_CLASSES = [f"{AnymailStyleMessage.__module__}.AnymailStyleMessage"]
        message = pinned(AnymailStyleMessage("Hi", "Body", "a@example.com", ["b@example.com"]))
        message.tags = ["kept"]
        self.assert_renders_as_django(message)

    def test_mixed_subtype_related_on_django_5_2_is_refused_by_django_6(self) -> None:
        message = pinned(html())
        message.mixed_subtype = "related"  # type: ignore[attr-defined]
        message.attach(inline_image())
        if compat.MODERN_EMAIL:  # DJANGO_COMPAT(<6.0): Django 6 refuses mixed_subtype.
            assert render(stored(message)) is None
        else:
            ours = self.assert_renders_as_django(message)
            assert reading(ours).get_content_type() == "multipart/related"


class TestDateAndMessageId(RenderAssertions):
    """Without a Date or Message-ID header, the renderer makes them as Django does."""

    @pytest.mark.parametrize("localtime", [False, True])
    def test_a_date_as_django_makes_it(self, settings: Any, localtime: bool) -> None:
        settings.EMAIL_USE_LOCALTIME = localtime
        settings.TIME_ZONE = "Asia/Kolkata"
        message = plain()
        message.extra_headers["Message-ID"] = "<fixed@example.com>"
        doc = stored(message)
        ours, theirs = render(doc), djangos(doc)
        assert ours is not None
        mine, django = reading(ours)["Date"], reading(theirs)["Date"]
        assert mine.datetime.utcoffset() == django.datetime.utcoffset()
        assert str(mine)[-5:] == str(django)[-5:]  # "+0000" or "-0000", as this Django says
        assert abs(mine.datetime - django.datetime) < datetime.timedelta(minutes=1)
        self.assert_well_formed(ours)

    def test_a_message_id_as_django_makes_it(self) -> None:
        message = plain()
        message.extra_headers["Date"] = "Mon, 01 Jan 2024 12:00:00 +0000"
        ours = render(stored(message))
        assert ours is not None
        msgid = str(reading(ours)["Message-ID"])
        assert re.fullmatch(r"<[0-9.]+@[^>]+>", msgid)
        assert render(stored(message)) != ours  # a new one each time, as Django's


# -- What is left to Django -----------------------------------------------------------


class OwnRendering(EmailMessage):
    """A subclass with its own ``message()``: only Django can render it."""

    def message(self, *args: Any, **kwargs: Any) -> Any:
        msg = super().message(*args, **kwargs)
        msg["X-Own"] = "yes"
        return msg


def _set(message: EmailMessage, **values: Any) -> EmailMessage:
    for name, value in values.items():
        setattr(message, name, value)
    return message


LEFT_TO_DJANGO = {
    "a non-ASCII local part (for SMTPUTF8)": lambda: plain(to=["jörg@example.com"]),
    "text the charset cannot encode": lambda: _set(plain(), encoding="iso-8859-1", body="€"),
    "two Date headers": lambda: plain(headers={"Date": "x", "date": "y"}),
    "a Bcc header": lambda: plain(headers={"Bcc": "b@example.com"}),
    "a message/partial attachment": lambda: _set(
        plain(), attachments=[("p", b"x", "message/partial")]
    ),
    "a forwarded multipart given as bytes": lambda: _set(
        plain(),
        attachments=[
            (
                "f.eml",
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
                "message/rfc822",
            )
        ],
    ),
}


def _with_long_part_header() -> EmailMessage:
    base = MIMEBase("application", "vnd.example")
    base.set_payload(b"\x00")
    encode_base64(base)
    base.add_header("X-Note", "x" * 120)  # compat32 cannot fold it; Django refolds it
    message = plain()
    _quietly(lambda: message.attach(base))
    return message


LEFT_TO_DJANGO["a stored part with a header line over 78 octets"] = _with_long_part_header
# Left to Django 6, whose header classes parse them; on Django 5.2 they are rendered (as
# Django does, with its own header functions).
LEFT_TO_DJANGO_6 = {
    "a subject that looks like an encoded word": lambda: _set(plain(), subject="=?utf-8?q?x?="),
    "an address with a comment": lambda: plain(to=["bob@example.com (Bob)"]),
    "a group": lambda: plain(to=["Friends: a@example.com, b@example.com;"]),
    "a quoted local part": lambda: plain(to=['"john smith"@example.com']),
    "a quoted name with runs of blanks": lambda: plain(to=['"A  B" <a@example.com>']),
    "an ASCII name word longer than a line": lambda: plain(to=["x" * 90 + " <a@example.com>"]),
    "a subject word longer than a folded line": lambda: _set(plain(), subject="x" * 90 + " end"),
}


class TestLeftToDjango:
    """``render`` returns None where Django must render the message itself."""

    @pytest.mark.parametrize("case", sorted(LEFT_TO_DJANGO))
    def test_returns_none(self, case: str) -> None:
        doc = stored(pinned(LEFT_TO_DJANGO[case]()))
        assert render(doc) is None
        assert unsupported(doc)

    @pytest.mark.parametrize("case", sorted(LEFT_TO_DJANGO_6))
    def test_returns_none_on_django_6(self, case: str) -> None:
        message = pinned(LEFT_TO_DJANGO_6[case]())
        if compat.MODERN_EMAIL:
            assert render(stored(message)) is None
        else:  # DJANGO_COMPAT(<6.0)
            RenderAssertions().assert_same_reading(
                render(stored(message)) or b"not rendered", djangos(stored(message))
            )

    @pytest.mark.parametrize("line_break", ["\r\n", "\n", "\r"])
    def test_a_stored_header_value_with_a_line_break(self, line_break: str) -> None:
        """Django refuses such a value (the message then fails): never sent as it is."""
        doc = stored(pinned(plain()))
        doc["headers"]["X-Tag"] = f"a{line_break}Bcc: victim@example.com"
        assert render(doc) is None
        doc["headers"]["X-Tag"] = {"$bytes": base64.b64encode(b"a" + line_break.encode()).decode()}
        assert render(doc) is None

    # DJANGO_COMPAT(<6.0): Django 5.2's legacy classes take these characters as they are.
    @pytest.mark.modern_email
    @pytest.mark.parametrize("line_break", ["\x0b", "\x85", "\u2028"])
    def test_a_header_value_python_splits_is_left_to_django_6(self, line_break: str) -> None:
        doc = stored(pinned(plain()))
        doc["headers"]["X-Tag"] = f"a{line_break}b"
        assert render(doc) is None

    def test_headers_for_smtputf8(self) -> None:
        """Raw UTF-8 headers, for an address only SMTPUTF8 carries, are Django's to write."""
        doc = stored(pinned(plain()))
        assert render(doc, utf8=True) is None
        assert render(doc) is not None

    def test_a_class_with_its_own_rendering(self, settings: Any) -> None:
        path = f"{OwnRendering.__module__}.OwnRendering"
        settings.MAILER_MESSAGE_CLASSES = [path]
        doc = stored(pinned(OwnRendering("Hi", "Body", "a@example.com", ["b@example.com"])))
        assert doc["class"] == path
        assert render(doc) is None
        assert "renders its own MIME" in str(unsupported(doc))

    def test_a_class_no_longer_allowed(self, settings: Any) -> None:
        path = f"{AnymailStyleMessage.__module__}.AnymailStyleMessage"
        settings.MAILER_MESSAGE_CLASSES = [path]
        doc = stored(pinned(AnymailStyleMessage("Hi", "Body", "a@example.com", ["b@example.com"])))
        settings.MAILER_MESSAGE_CLASSES = []
        assert render(doc) is None

    def test_text_as_bytes_is_rendered_by_django_6_only(self) -> None:
        """Django 5.2 cannot render a text/* part given as bytes; Django 6 decodes it."""
        message = pinned(plain())
        message.attachments.append(("notes.txt", b"caf\xc3\xa9", "text/plain"))
        doc = stored(message)
        assert (render(doc) is not None) is compat.MODERN_EMAIL

"""Every string that becomes part of a header is refused at enqueue if it could break a line.

Line breaks (CR, LF, the other separators Unicode and ``str.splitlines()`` know),
NUL and every other control character but TAB, in attachment MIME types and file
names, alternatives' MIME types, the body's subtype and charset, the multipart
subtypes, header names and values, the subject and every address: refused with a
``mailer.exceptions`` error that is also a ``ValueError``, nothing written, and
nothing ever reaches the server. Through ``mailer.send_mail`` and through
Django's ``EmailMessage.send()`` (``DbBackend``).
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import MIMEPart
from email.mime.application import MIMEApplication
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

import mailer
from mailer import compat
from mailer.exceptions import InvalidAddress, InvalidContentType, InvalidHeader, MailerError

from .test_bad_input import VICTIM, BadInput

INJECTED = "X-Injected: yes"
# Each with a name for the test id.
BREAKS = {
    "CR": "\r",
    "LF": "\n",
    "CRLF": "\r\n",
    "blank line": "\r\n\r\n",
    "fold": "\r\n ",
    "NUL": "\x00",
    "SOH": "\x01",
    "ESC": "\x1b",
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "DEL": "\x7f",
    "NEL": "\x85",
    "CSI": "\x9b",
    "LS": "\u2028",
    "PS": "\u2029",
}
SOME_BREAKS = {name: BREAKS[name] for name in ("CRLF", "LF", "NUL", "ESC", "NEL", "LS")}


def mime_part(header_value: str) -> Any:
    """A MIME part whose header holds ``header_value``, set raw as a careless caller might."""
    part: Any
    if compat.MODERN_EMAIL:
        part = MIMEPart()
        part.set_content(b"%PDF-1.4", maintype="application", subtype="pdf")
    else:  # DJANGO_COMPAT(<6.0): legacy email.mime parts
        part = MIMEApplication(b"%PDF-1.4", "pdf")
    part.set_raw("Content-Disposition", header_value)
    return part


Spoil = Callable[[EmailMultiAlternatives, str], None]
FIELDS: dict[str, tuple[type[MailerError], Spoil]] = {
    "attachment MIME type": (
        InvalidContentType,
        lambda m, bad: m.attach("a.pdf", b"%PDF", f"application/pdf{bad}{INJECTED}"),
    ),
    "text attachment MIME type": (
        InvalidContentType,
        lambda m, bad: m.attach("a.txt", "text", f"text/plain{bad}{INJECTED}"),
    ),
    "attachment file name": (
        InvalidHeader,
        lambda m, bad: m.attach(f"a{bad}{INJECTED}.pdf", b"%PDF", "application/pdf"),
    ),
    "alternative MIME type": (
        InvalidContentType,
        lambda m, bad: m.attach_alternative("<p>hi</p>", f"text/html{bad}{INJECTED}"),
    ),
    "body subtype": (
        InvalidContentType,
        lambda m, bad: setattr(m, "content_subtype", f"html{bad}{INJECTED}"),
    ),
    "charset": (
        InvalidContentType,
        lambda m, bad: setattr(m, "encoding", f"utf-8{bad}{INJECTED}"),
    ),
    "mixed subtype": (
        InvalidContentType,
        lambda m, bad: setattr(m, "mixed_subtype", f"related{bad}{INJECTED}"),
    ),
    "alternative subtype": (
        InvalidContentType,
        lambda m, bad: setattr(m, "alternative_subtype", f"alternative{bad}{INJECTED}"),
    ),
    "header name": (
        InvalidHeader,
        lambda m, bad: m.extra_headers.update({f"X-Tag{bad}{INJECTED}": "1"}),
    ),
    "header value": (
        InvalidHeader,
        lambda m, bad: m.extra_headers.update({"X-Tag": f"a{bad}{INJECTED}"}),
    ),
    "subject": (InvalidHeader, lambda m, bad: setattr(m, "subject", f"Hi{bad}Bcc: {VICTIM}")),
    "reply_to": (InvalidAddress, lambda m, bad: m.reply_to.append(f"Me{bad}<me@example.com>")),
    "from": (InvalidAddress, lambda m, bad: setattr(m, "from_email", f"a@example.com{bad}")),
    "cc display name": (InvalidAddress, lambda m, bad: m.cc.append(f'"Eve{bad}" <e@x.com>')),
    "bcc": (InvalidAddress, lambda m, bad: m.bcc.append(f"b@example.com{bad}RCPT TO:<{VICTIM}>")),
    "attached message's subject": (
        InvalidHeader,
        lambda m, bad: m.attach(
            "fwd.eml", EmailMessage(f"Fwd{bad}{INJECTED}", "b", "a@x.com", ["b@x.com"])
        ),
    ),
    "MIME part header": (
        InvalidHeader,
        lambda m, bad: m.attach(mime_part(f"attachment{bad}{INJECTED}")),
    ),
}
CASES = [
    pytest.param(field, bad, id=f"{field}-{name}")
    for field in FIELDS
    for name, bad in (
        BREAKS.items()
        if field.startswith(("attachment", "text attachment"))
        else SOME_BREAKS.items()
    )
    # A fold is a legal line break in a MIME part's own (already folded) header.
    if not (field == "MIME part header" and name == "fold")
]


def message() -> EmailMultiAlternatives:
    from .samples import html

    return html()


@pytest.mark.django_db(transaction=True)
class TestEnqueueRefuses(BadInput):
    @pytest.mark.parametrize("field, bad", CASES)
    def test_through_django_email_message_send(self, field: str, bad: str) -> None:
        exception, spoil = FIELDS[field]
        spoiled = message()
        spoil(spoiled, bad)
        refusal = "line break|control character|MIME|header name"
        with self.refused_at_enqueue(exception, match=refusal):
            spoiled.send()
        self.assert_nothing_reached_the_server()

    @pytest.mark.parametrize("bad", list(SOME_BREAKS.values()), ids=list(SOME_BREAKS))
    @pytest.mark.parametrize(
        "call",
        [
            lambda bad: mailer.send_mail(f"Hi{bad}Bcc: x@x.com", "b", "a@x.com", ["b@x.com"]),
            lambda bad: mailer.send_mail("Hi", "b", f"a@x.com{bad}", ["b@x.com"]),
            lambda bad: mailer.send_mail("Hi", "b", "a@x.com", [f"b@x.com{bad}Bcc: x@x.com"]),
            lambda bad: mailer.send_mail("Hi", "b", "a@x.com", ["b@x.com"], headers={"X": bad}),
            lambda bad: mailer.send_mail("Hi", "b", "a@x.com", ["b@x.com"], headers={bad: "x"}),
            lambda bad: mailer.send_html_mail(f"Hi{bad}", "b", "<p>b</p>", "a@x.com", ["b@x.com"]),
            lambda bad: mailer.send_mass_mail([(f"Hi{bad}", "b", "a@x.com", ["b@x.com"])]),
        ],
        ids=["subject", "from", "to", "header value", "header name", "html subject", "mass"],
    )
    def test_through_the_mailer_api(self, call: Callable[[str], int], bad: str) -> None:
        with self.refused_at_enqueue(ValueError) as refused:
            call(bad)
        assert isinstance(refused.value, MailerError)
        self.assert_nothing_reached_the_server()

    def test_each_error_is_a_mailer_error_and_a_value_error(self) -> None:
        for exception, _ in FIELDS.values():
            assert issubclass(exception, MailerError) and issubclass(exception, ValueError)
        assert issubclass(InvalidContentType, InvalidHeader)


@pytest.mark.django_db(transaction=True)
class TestWhatStillGoes(BadInput):
    def test_ordinary_types_parameters_charsets_and_tabs_are_delivered_intact(self) -> None:
        sent = message()
        if not compat.MODERN_EMAIL:  # DJANGO_COMPAT(<6.0): Django 6 dropped mixed_subtype
            sent.mixed_subtype = "related"
        sent.encoding = "iso-8859-1"
        sent.extra_headers["X-Note"] = "tab\tseparated"
        sent.attach(
            "invite.ics", "BEGIN:VCALENDAR\nEND:VCALENDAR\n", "text/calendar; method=REQUEST"
        )
        sent.attach(
            "sheet.xlsx",
            b"PK\x03\x04",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        assert sent.send() == 1
        self.deliver()
        parsed = self.assert_delivered_once(sent).message
        subtype = "mixed" if compat.MODERN_EMAIL else "related"
        assert parsed.get_content_type() == f"multipart/{subtype}"
        invite = next(p for p in parsed.walk() if p.get_filename() == "invite.ics")
        assert invite.get_content_type() == "text/calendar"
        assert invite.get_param("method") == "REQUEST"
        assert parsed["X-Note"] == "tab\tseparated"


class TestWhyItMatters:
    """What Django itself does with an injected MIME type when nothing refuses it first."""

    def test_django_would_send_the_injected_line_or_fail_at_delivery(self) -> None:
        unchecked = message()
        unchecked.attach("a.pdf", b"%PDF", "application/pdf\r\n\r\nInjected body")
        if compat.MODERN_EMAIL:
            # Django 6 refuses it, but only when the message is rendered: at delivery.
            with pytest.raises(ValueError, match="linefeed or carriage return"):
                compat.render(unchecked)
        else:  # DJANGO_COMPAT(<6.0): Django 5.2 sends it in the attachment's header block.
            data = compat.render(unchecked)
            head = data.split(b"Content-Type: application/pdf\r\n", 1)[1]
            assert head.startswith(b"Injected body\r\n")

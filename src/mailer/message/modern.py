"""The MIME Django 6 sends, built directly.

Django 6's ``EmailMessage.message()`` assembles Python's modern
``email.message.EmailMessage`` (``set_content``, ``make_alternative``,
``add_attachment``) and the SMTP backend writes it with ``email.policy.SMTP``.
This module produces the same parts in the same order, with the same
headers, charsets and transfer encodings, straight from the stored fields.
The details that differ from Django 5.2 are kept on purpose:

* text is encoded as ``email.contentmanager`` does: 7bit or 8bit when no
  line is longer than 78 octets, else quoted-printable or base64, whichever
  is shorter over the first ten lines; a text part always ends with a line
  break;
* ``MIME-Version`` is on the top level only when it has a body of its own,
  and on every alternative and attachment; a part without a file name gets
  ``Content-Disposition: attachment`` after it;
* a ``message/rfc822`` attachment says ``Content-Transfer-Encoding: 8bit``.
"""

from __future__ import annotations

import datetime
import functools
import re
import time
from collections.abc import Sequence
from email import quoprimime
from email.charset import ALIASES
from email.utils import format_datetime, make_msgid, parsedate_to_datetime

from django.conf import settings as django_settings
from django.core.mail.utils import DNS_NAME
from django.utils import timezone

from mailer.message.document import (
    Attachment,
    Document,
    File,
    HeaderValue,
    StoredPart,
    extra_headers,
    has_header,
    verbatim_message,
)
from mailer.message.headers import (
    address_field,
    disposition,
    fold,
    is_token,
    mailbox,
    mailboxes,
    message_id,
    unstructured,
)
from mailer.message.tree import Part, Unsupported, base64_lines, crlf, field_line, serialise

MIME_VERSION = b"MIME-Version: 1.0\r\n"
_MAX_LENGTH = 78  # email.policy.SMTP.max_line_length: longer text lines are encoded
_ADDRESS_HEADERS = frozenset({"sender", "resent-from", "resent-to", "resent-cc", "resent-sender"})
_SINGLE_ADDRESS = frozenset({"sender", "resent-sender"})
_DATE_HEADERS = frozenset({"date", "resent-date", "orig-date"})
# What str.splitlines() breaks at: Python's modern email API refuses header values with these.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CTE = {
    cte: field_line("Content-Transfer-Encoding", cte)
    for cte in ("7bit", "8bit", "quoted-printable", "base64")
}
# Content-Type fields of text parts, by (subtype, charset): a handful in any program.
_TEXT_TYPES: dict[tuple[str, str], bytes] = {}


def message(doc: Document) -> Part:
    """The MIME tree of ``doc`` as Django 6 builds it, top-level headers included."""
    charset = doc.encoding or str(django_settings.DEFAULT_CHARSET)
    with_body = bool(doc.body) or not (doc.alternatives or doc.attachments)
    node: Part | None = None
    if with_body:
        body = doc.body
        if isinstance(body, bytes):
            body = _decode(body, charset)
        node = _text(body, doc.content_subtype, charset)
    if doc.alternatives:
        parts = [_alternative(*alternative, charset) for alternative in doc.alternatives]
        node = Part([None], parts=[node, *parts] if node else parts, subtype="alternative")
    if doc.attachments:
        parts = [_attachment(attachment, charset) for attachment in doc.attachments]
        node = Part([None], parts=[node, *parts] if node else parts, subtype="mixed")
    assert node is not None
    if node.is_multipart:
        node.headers = [MIME_VERSION, None] if with_body else [None]
    else:
        node.headers.append(MIME_VERSION)
    node.headers += _top_headers(doc)
    return node


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except (UnicodeError, LookupError):
        raise Unsupported("bytes that are not text in the message's charset") from None


def _text(text: str, subtype: str, charset: str) -> Part:
    """A text leaf as ``set_content(text, subtype, charset=...)`` makes it (no MIME-Version)."""
    param = ALIASES.get(charset, charset)
    if not (is_token(subtype) and is_token(param)):
        raise Unsupported("an unusual text subtype or charset")
    cte, body = encode_text(text, charset)
    content_type = _TEXT_TYPES.get((subtype, param))
    if content_type is None:
        pieces = [("", f"text/{subtype};"), (" ", f'charset="{param}"')]
        content_type = fold("Content-Type", pieces)
        if len(_TEXT_TYPES) < 64:
            _TEXT_TYPES[subtype, param] = content_type
    return Part([content_type, _CTE[cte]], body)


def encode_text(text: str, charset: str) -> tuple[str, bytes]:
    """The transfer encoding and content of ``text``, as ``email.contentmanager`` picks them."""
    try:
        lines = text.encode(charset).splitlines()
    except (UnicodeError, LookupError):
        raise Unsupported("text that the charset cannot encode") from None
    if max(map(len, lines), default=0) <= _MAX_LENGTH:
        data = b"\n".join(lines) + b"\n"
        return ("7bit" if data.isascii() else "8bit"), crlf(data)
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniffed = quoted_printable(sniff.decode("latin-1"))
    if len(sniffed) > 4 * ((len(sniff) + 2) // 3) + 1:  # len(binascii.b2a_base64(sniff))
        return "base64", base64_lines(b"\r\n".join(lines) + b"\r\n")
    if len(lines) > 10:
        data = b"\n".join(lines) + b"\n"
        sniffed = quoted_printable(data.decode("latin-1"))
    return "quoted-printable", crlf(sniffed.encode("ascii"))


# Text quoted-printable keeps as it is: printable ASCII but "=", blanks, line ends.
_QP_KEPT = re.compile(r"[\t\n\r -<>-~]*")


def quoted_printable(text: str) -> str:
    """``quoprimime.body_encode(text, 78)`` (lines joined with "\\n"), which
    ``email.contentmanager`` sends.

    Text with nothing to quote (most text over 78 characters a line) takes a
    shorter way to the same result, which only breaks its long lines: Python's
    version maps every character and checks each break for an escape
    sequence, a few µs a message on the Django 6 path.
    """
    if not text or not _QP_KEPT.fullmatch(text):
        return quoprimime.body_encode(text, _MAX_LENGTH)
    width = _MAX_LENGTH - 1  # room for the "=" of a soft line break
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        last_start = len(line) - 1 - _MAX_LENGTH
        while start <= last_start:
            out.append(line[start : start + width] + "=")
            start += width
        if line and line[-1] in " \t":  # a blank at the end of a line is quoted
            room = start - last_start
            blank = f"={ord(line[-1]):02X}"
            if room >= 3:
                end = blank
            elif room == 2:
                end = line[-1] + "=\n"
            else:
                end = "=\n" + blank
            out.append(line[start:-1] + end)
        else:
            out.append(line[start:])
    if text[-1] in "\r\n":
        out.append("")
    return "\n".join(out)


def _binary(maintype: str, subtype: str, data: bytes) -> Part:
    if not (is_token(maintype) and is_token(subtype)) or maintype in ("multipart", "message"):
        raise Unsupported(f"MIME type {maintype}/{subtype}")
    headers: list[bytes | None] = [
        field_line("Content-Type", f"{maintype}/{subtype}"),
        field_line("Content-Transfer-Encoding", "base64"),
    ]
    return Part(headers, base64_lines(data))


def _alternative(content: str | bytes, maintype: str, subtype: str, charset: str) -> Part:
    if maintype == "text":
        part = _text(
            content if isinstance(content, str) else _decode(content, "utf-8"), subtype, charset
        )
    else:
        # force_bytes(content, encoding=charset): text encoded, bytes recoded from UTF-8.
        try:
            if isinstance(content, bytes) and charset != "utf-8":
                content = content.decode("utf-8")
            if isinstance(content, str):
                content = content.encode(charset)
        except (UnicodeError, LookupError):
            raise Unsupported("an alternative the charset cannot encode") from None
        part = _binary(maintype, subtype, content)
    part.headers.append(MIME_VERSION)
    return part


def _attachment(attachment: Attachment, charset: str) -> Part:
    if isinstance(attachment, StoredPart):
        return Part([], raw=attachment.data)
    maintype, subtype, content = attachment.maintype, attachment.subtype, attachment.content
    if maintype == "text" and isinstance(content, bytes):
        try:
            content = content.decode()
        except UnicodeDecodeError:
            maintype, subtype = "application", "octet-stream"
    if maintype == "text" and isinstance(content, str):
        part = _text(content, subtype, charset)
    elif maintype == "message":
        part = _message_part(subtype, content)
    elif isinstance(content, str | bytes):
        part = _binary(maintype, subtype, content.encode() if isinstance(content, str) else content)
    else:
        raise Unsupported("a nested message with a type other than message/rfc822")
    return _attached(part, attachment)


def _message_part(subtype: str, content: str | bytes | Document | StoredPart) -> Part:
    if subtype != "rfc822":
        raise Unsupported(f"message/{subtype}")
    if isinstance(content, Document):
        data = serialise(message(content))
    elif isinstance(content, StoredPart):
        data = content.data
    else:
        data = verbatim_message(content)
    headers: list[bytes | None] = [
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: 8bit\r\n",
    ]
    return Part(headers, data)


def _attached(part: Part, attachment: File) -> Part:
    """``part`` with the headers ``add_attachment()`` adds after its content."""
    if attachment.filename is None:
        part.headers += [MIME_VERSION, b"Content-Disposition: attachment\r\n"]
    elif not attachment.filename:
        raise Unsupported("an empty file name")
    elif _LINE_BREAK.search(attachment.filename):
        raise Unsupported("a file name with a line break")
    else:
        part.headers += [disposition("attachment", attachment.filename), MIME_VERSION]
    return part


def _top_headers(doc: Document) -> list[bytes | None]:
    """Subject, From, To, Cc, Reply-To, Date, Message-ID, then the extra headers."""
    texts = [doc.subject, doc.from_email, *doc.to, *doc.cc, *doc.reply_to]
    texts += [value for _, value in doc.headers if isinstance(value, str)]
    if _LINE_BREAK.search("".join(texts)):  # (joining makes no line break)
        raise Unsupported("a header value with a line break, which Django refuses")
    headers: list[bytes | None] = [unstructured("Subject", doc.subject)]
    sender = doc.header("From")
    headers.append(_addresses("From", [_str(doc.from_email if sender is None else sender)]))
    for name, values in (("To", doc.to), ("Cc", doc.cc), ("Reply-To", doc.reply_to)):
        given = doc.header(name)
        if given is not None:
            headers.append(_addresses(name, [_str(given)]))
        elif values:
            headers.append(_addresses(name, values, listed=True))
    if not has_header(doc, "date"):
        headers.append(_date_now())
    if not has_header(doc, "message-id"):
        headers.append(field_line("Message-ID", make_msgid(domain=str(DNS_NAME))))
    headers += [_extra(name, value) for name, value in extra_headers(doc)]
    return headers


def _addresses(name: str, values: Sequence[str], *, listed: bool = False) -> bytes:
    """An address field of ``values``: one mailbox each (``listed``), else each a list
    of them. A field of one value is remembered: a run's messages share senders."""
    if len(values) == 1:
        return _address(name, values[0], listed)
    if listed:
        return address_field(name, [mailbox(value) for value in values])
    return address_field(name, [box for value in values for box in mailboxes(value)])


@functools.lru_cache(maxsize=1024)
def _address(name: str, value: str, single: bool) -> bytes:
    return address_field(name, [mailbox(value)] if single else mailboxes(value))


def _date_now() -> bytes:
    """The Date field Django 6 writes now: made once a second (it shows whole seconds)."""
    tz = timezone.get_current_timezone() if django_settings.EMAIL_USE_LOCALTIME else datetime.UTC
    second = int(time.time())
    found = _DATES.get((second, tz))
    if found is None:
        if len(_DATES) > 16:
            _DATES.clear()
        when = datetime.datetime.fromtimestamp(second, tz)
        found = _DATES[second, tz] = field_line("Date", format_datetime(when))
    return found


_DATES: dict[tuple[int, datetime.tzinfo], bytes] = {}


def _str(value: HeaderValue) -> str:
    if isinstance(value, bytes):
        value = _decode(value, "utf-8")
        if _LINE_BREAK.search(value):
            raise Unsupported("a header value with a line break, which Django refuses")
        return value
    if not isinstance(value, str):
        raise Unsupported("a header value that is not text")
    return value


def _extra(name: str, value: HeaderValue) -> bytes:
    lower = name.lower()
    if lower in _DATE_HEADERS:
        return field_line(name, format_datetime(_datetime(value)))
    text = _str(value)
    if lower in _ADDRESS_HEADERS:
        boxes = mailboxes(text)
        if lower in _SINGLE_ADDRESS and len(boxes) > 1:
            raise Unsupported(f"{name} with more than one address")
        return address_field(name, boxes)
    if lower == "message-id":
        return field_line(name, message_id(text))
    return unstructured(name, text)


def _datetime(value: HeaderValue) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    try:
        return parsedate_to_datetime(_str(value))
    except (ValueError, TypeError, IndexError, OverflowError):
        raise Unsupported("a date Python cannot read") from None

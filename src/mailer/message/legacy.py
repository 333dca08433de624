"""The MIME Django 5.2 sends, built directly (DJANGO_COMPAT(<6.0)).

Django 5.2's ``EmailMessage.message()`` builds ``email.mime`` objects
(``SafeMIMEText``, ``SafeMIMEMultipart``, ``MIMEBase``) and its SMTP backend
writes them with the ``compat32`` policy. Header values go through Django's
own ``forbid_multi_line_headers()`` (RFC 2047 in the message's charset,
addresses one by one) and the legacy ``Header`` folding, as Django's do;
short printable ASCII values, the common case, come out unchanged from both
and are written directly. What differs from Django 6 is kept on purpose:

* UTF-8 text is 7bit or 8bit unless a line passes 998 octets (then
  quoted-printable); other charsets take ``email.charset``'s body encoding;
  text is sent with the line breaks it has, a final one included or not;
* every part carries ``MIME-Version``; an attachment without a file name
  has no ``Content-Disposition``; ``message/rfc822`` has no transfer encoding;
* ``mixed_subtype`` and ``alternative_subtype`` name the multiparts;
* as ``mailer.compat.render`` does, a top-level Subject that Django folds
  past 78 octets (a long word) goes as UTF-8 encoded words instead.
"""

from __future__ import annotations

import email.policy
import functools
from email import quoprimime
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.utils import encode_rfc2231, formatdate, getaddresses, make_msgid, quote

from django.conf import settings as django_settings
from django.core.mail.message import ADDRESS_HEADERS, forbid_multi_line_headers
from django.core.mail.utils import DNS_NAME

from mailer.message.document import (
    Attachment,
    Document,
    HeaderValue,
    StoredPart,
    extra_headers,
    has_header,
    verbatim_message,
)
from mailer.message.headers import continued, is_token
from mailer.message.tree import (
    FOLD_AT,
    MAX_LINE,
    Part,
    Unsupported,
    base64_lines,
    crlf,
    longest_line,
    serialise,
)

MIME_VERSION = b"MIME-Version: 1.0\r\n"
_COMPAT32 = email.policy.compat32.clone(linesep="\r\n")
# SafeMIMEText sends UTF-8 as quoted-printable only when a line is longer than this.
_LONG_LINE = 998


def message(doc: Document, *, top: bool = True) -> Part:
    """The MIME tree of ``doc`` as Django 5.2 builds it, top-level headers included."""
    encoding = doc.encoding or str(django_settings.DEFAULT_CHARSET)
    if not isinstance(doc.body, str):
        raise Unsupported("a body of bytes, which Django 5.2 cannot render")
    node = _text(doc.body, doc.content_subtype, encoding)
    if doc.alternatives:
        parts = [node] if doc.body else []
        parts += [_content(*alternative, encoding) for alternative in doc.alternatives]
        node = _multipart(doc.alternative_subtype, parts)
    if doc.attachments:
        parts = [node] if doc.body or node.is_multipart else []
        parts += [_attachment(attachment, encoding) for attachment in doc.attachments]
        node = _multipart(doc.mixed_subtype, parts)
    node.headers += _top_headers(doc, encoding, top)
    return node


def _multipart(subtype: str, parts: list[Part]) -> Part:
    if not is_token(subtype):
        raise Unsupported(f"multipart/{subtype}")
    return Part([None, MIME_VERSION], parts=parts, subtype=subtype)


def _text(text: str, subtype: str, encoding: str) -> Part:
    """A ``SafeMIMEText``: Content-Type, MIME-Version, Content-Transfer-Encoding."""
    if not is_token(subtype):
        raise Unsupported(f"text/{subtype}")
    charset, cte, body = _encode_text(text, encoding)
    content_type = _fold("Content-Type", f'text/{subtype}; charset="{charset}"')
    headers = [content_type, MIME_VERSION, _fold("Content-Transfer-Encoding", cte)]
    if charset != encoding:
        # set_charset() re-sets Content-Type with the output charset's name, after MIME-Version.
        headers[:2] = [MIME_VERSION, content_type]
    return Part(list(headers), body)


def _encode_text(text: str, encoding: str) -> tuple[str, str, bytes]:
    """The charset, transfer encoding and content ``SafeMIMEText`` gives ``text``."""
    if encoding == "utf-8":
        # Django's own choice for UTF-8: no base64; quoted-printable for long lines.
        data = text.encode("utf-8")
        if len(data) > _LONG_LINE and any(
            len(line.encode("utf-8")) > _LONG_LINE for line in text.splitlines()
        ):
            return "utf-8", "quoted-printable", _qp(data)
        return "utf-8", "7bit" if data.isascii() else "8bit", _unencoded(data)
    charset = _charset(encoding)
    name = str(charset.get_output_charset())
    try:
        data = text.encode(name)
    except UnicodeError:
        raise Unsupported("text the message's charset cannot encode") from None
    if charset.body_encoding == QP:
        return name, "quoted-printable", _qp(data)
    if charset.body_encoding == BASE64:
        return name, "base64", base64_lines(data)
    return name, "7bit" if data.isascii() else "8bit", _unencoded(data)


def _unencoded(data: bytes) -> bytes:
    """Text sent as it is, which Django 5.2 does even with a line over 998 octets.

    (For UTF-8 it looks for long lines with ``str.splitlines()``, which also
    breaks lines at form feeds and other separators SMTP does not know.)
    """
    data = crlf(data)
    if len(data) > MAX_LINE and longest_line(data) > MAX_LINE:
        raise Unsupported("a line over 998 octets, which Django 5.2 would send as it is")
    return data


@functools.lru_cache(maxsize=32)
def _charset(encoding: str) -> Charset:
    try:
        charset = Charset(encoding)
    except (LookupError, UnicodeError):
        raise Unsupported(f"charset {encoding!r}") from None
    if charset.get_output_charset() != charset.input_charset:
        raise Unsupported(f"charset {encoding!r}, converted to another for sending")
    return charset


def _qp(data: bytes) -> bytes:
    return crlf(quoprimime.body_encode(data.decode("latin-1")).encode("ascii"))


def _content(
    content: str | bytes | Document | StoredPart, maintype: str, subtype: str, encoding: str
) -> Part:
    """``EmailMessage._create_mime_attachment()``: a part for an alternative or attachment."""
    if maintype == "text":
        if not isinstance(content, str):
            raise Unsupported("text given as bytes, which Django 5.2 cannot render")
        return _text(content, subtype, encoding)
    if maintype == "message" and subtype == "rfc822":
        if isinstance(content, Document):
            data = serialise(message(content, top=False))
        elif isinstance(content, StoredPart):
            data = content.data
        else:
            data = verbatim_message(content)
        return Part([b"Content-Type: message/rfc822\r\n", MIME_VERSION], data)
    if maintype in ("message", "multipart") or not (is_token(maintype) and is_token(subtype)):
        raise Unsupported(f"MIME type {maintype}/{subtype}")
    if isinstance(content, str):
        # What Message.get_payload(decode=True) makes of text it must base64-encode.
        text = content
        try:
            content = text.encode("ascii")
        except UnicodeError:
            content = text.encode("raw-unicode-escape")
    if not isinstance(content, bytes):
        raise Unsupported("a nested message with a type other than message/rfc822")
    headers: list[bytes | None] = [
        _fold("Content-Type", f"{maintype}/{subtype}"),
        MIME_VERSION,
        b"Content-Transfer-Encoding: base64\r\n",
    ]
    return Part(headers, base64_lines(content))


def _attachment(attachment: Attachment, encoding: str) -> Part:
    if isinstance(attachment, StoredPart):
        if attachment.modern:
            raise Unsupported("a MIMEPart attachment, which Django 5.2 cannot render")
        return Part([], raw=attachment.data)
    part = _content(attachment.content, attachment.maintype, attachment.subtype, encoding)
    filename = attachment.filename
    if filename:
        if filename.isascii():
            value = f'attachment; filename="{quote(filename)}"'
        else:
            value = f"attachment; filename*={encode_rfc2231(filename, 'utf-8', '')}"
        field = _fold("Content-Disposition", value)
        if len(field) > MAX_LINE and longest_line(field) > MAX_LINE:
            # Django would send it on one line; RFC 2231 continuations keep it within bounds.
            field = continued("Content-Disposition: attachment;", "filename", filename)
        part.headers.append(field)
    return part


def _top_headers(doc: Document, encoding: str, top: bool) -> list[bytes | None]:
    """Subject, From, To, Cc, Reply-To, Date, Message-ID, then the extra headers."""
    headers: list[bytes | None] = [_subject(doc.subject, encoding, top)]
    sender = doc.header("From")
    headers.append(_field("From", doc.from_email if sender is None else sender, encoding))
    for name, values in (("To", doc.to), ("Cc", doc.cc), ("Reply-To", doc.reply_to)):
        given = doc.header(name)
        if given is not None:
            headers.append(_field(name, given, encoding))
        elif values:
            headers.append(_field(name, ", ".join(values), encoding))
    if not has_header(doc, "date"):
        date = formatdate(localtime=bool(django_settings.EMAIL_USE_LOCALTIME))
        headers.append(_fold("Date", date))
    if not has_header(doc, "message-id"):
        headers.append(_fold("Message-ID", make_msgid(domain=str(DNS_NAME))))
    headers += [_field(name, value, encoding) for name, value in extra_headers(doc)]
    return headers


def _subject(subject: str, encoding: str, top: bool) -> bytes:
    field = _encode("Subject", subject, encoding)
    if top and len(field) > FOLD_AT and any(len(line) > FOLD_AT for line in field.split(b"\r\n")):
        header = Header(subject, "utf-8", header_name="Subject")
        encoded = header.encode(linesep="\r\n", maxlinelen=FOLD_AT)
        field = f"Subject: {encoded}\r\n".encode("ascii")
    return _bounded("Subject", field)


def _field(name: str, value: HeaderValue, encoding: str) -> bytes:
    """A header field set with ``msg[name] = value`` on a SafeMIME object."""
    if isinstance(value, bytes):
        raise Unsupported("a header value of bytes")
    return _bounded(name, _encode(name, str(value), encoding))


def _encode(name: str, text: str, encoding: str) -> bytes:
    if _short(name, text):
        return f"{name}: {text}\r\n".encode("ascii")
    if name.lower() in ADDRESS_HEADERS and not text.isascii():
        for _, address in getaddresses([text]):
            if not address.rpartition("@")[0].isascii():
                # Django 5.2 would put an encoded word in it: for SMTPUTF8, not this.
                raise Unsupported("an address with a non-ASCII local part")
    try:
        name, text = forbid_multi_line_headers(name, text, encoding)
    except ValueError:
        raise Unsupported(f"a {name} header Django 5.2 refuses") from None
    return _fold(name, text)


def _fold(name: str, text: str) -> bytes:
    """``name: text`` folded as the compat32 generator folds it."""
    if _short(name, text):
        return f"{name}: {text}\r\n".encode("ascii")
    return bytes(_COMPAT32.fold_binary(name, text))


def _short(name: str, text: str) -> bool:
    """Printable ASCII that fits a line: compat32 and Django leave it as it is."""
    return len(name) + len(text) <= FOLD_AT - 2 and text.isascii() and text.isprintable()


def _bounded(name: str, field: bytes) -> bytes:
    if len(field) > MAX_LINE and longest_line(field) > MAX_LINE:
        raise Unsupported(f"a {name} header Django 5.2 sends on a line over 998 octets")
    return field

"""Checks an email must pass before it is queued.

Everything Django (or the SMTP server) would reject at delivery time is
rejected here instead, in the caller, with an exception from
:mod:`mailer.exceptions` -- so a bad message never reaches the queue:

* a line break, NUL or other control character in the subject, a header's
  name or value, an address or an attachment's file name
  (:class:`~mailer.exceptions.InvalidHeader`,
  :class:`~mailer.exceptions.InvalidAddress`); "line break" means every
  separator ``str.splitlines()`` knows, as Django 6 refuses them all, and
  "control character" every C0 and C1 control but TAB, and DEL;
* a MIME type (of an attachment or an alternative), a subtype
  (``content_subtype``, ``mixed_subtype``, ``alternative_subtype``) or a
  charset (``encoding``) that is not text in the MIME grammar, or holds any
  control character (:class:`~mailer.exceptions.InvalidContentType`): each
  is written into a ``Content-Type`` header;
* a line break that is not a fold, or a control character, in a header of a
  MIME part given as an attachment (:class:`~mailer.exceptions.InvalidHeader`);
* an address that is None, not text, malformed, or more than one mailbox
  (:class:`~mailer.exceptions.InvalidAddress`);
* a header value Django cannot render: anything but text on Django 6 (which
  refuses numbers and dates, a datetime ``Date`` excepted), and on Django 5.2
  anything but text, numbers and dates (:class:`~mailer.exceptions.InvalidHeader`);
* a recipient list that is a plain string
  (:class:`~mailer.exceptions.InvalidRecipientList`, also a ``TypeError``);
* NUL in any text that would travel unencoded (body, text alternatives,
  text attachments), text that is not valid Unicode (lone surrogates), and
  attachments Django cannot render (:class:`~mailer.exceptions.InvalidMessage`).
* an idempotency key that is not a str of 1 to 255 characters without
  control characters (:class:`~mailer.exceptions.InvalidIdempotencyKey`).

The size limit (``MAILER_MAX_MESSAGE_SIZE``) is checked by the queue once the
message is stored, as it applies to the stored form.
"""

from __future__ import annotations

import datetime
import email.charset
import email.message
import functools
import mimetypes
import re
from collections.abc import Iterable, Mapping
from email.errors import HeaderParseError
from email.headerregistry import AddressHeader
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.utils.encoding import force_str, punycode
from django.utils.functional import Promise

from mailer.compat import MODERN_EMAIL
from mailer.exceptions import (
    InvalidAddress,
    InvalidContentType,
    InvalidHeader,
    InvalidIdempotencyKey,
    InvalidMessage,
    InvalidRecipientList,
)

# A bare ASCII addr-spec with nothing a parser could misread: the common case,
# checked without the (slow) full RFC 5322 parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SIMPLE_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
# The same inside angle brackets after a display name of plain words ("Shop <a@b.c>").
_SIMPLE_NAME_ADDR = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <" + _SIMPLE_ADDRESS.pattern + ">")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':'
# Every line separator of str.splitlines() (Python's modern email API, in Django 6, refuses
# them all in a header; older code splits lines on them), NUL, and every other control
# character but TAB: C0, DEL and C1.
_FORBIDDEN_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# A token of RFC 2045 (MIME types, subtypes, charsets): printable ASCII but tspecials.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SUBTYPE = re.compile(_TOKEN)
# type/subtype, and parameters after ";" (Django passes "text/calendar; method=REQUEST" on).
_MIME_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?: *;[ -~]*)?")
# A fold (a line break followed by a blank) in a parsed header: not an injected line.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SURROGATE = re.compile("[\ud800-\udfff]")
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "reply_to")
_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to", "sender"}
# Header values Django can render. Django 6 hands them to Python's modern email
# API, which takes text (bytes are decoded) and datetimes for date headers only.
_HEADER_VALUE_TYPES: tuple[type, ...] = (str, Promise, bytes)
_DATE_HEADERS = {"date", "resent-date"}
# Headers a caller may set on mail sent through Django to steer the queue: the queue
# reads, checks and removes them before the message is stored, so they are never sent.
PRIORITY_HEADER = "X-Mailer-Priority"
SEND_AT_HEADER = "X-Mailer-Send-At"
EXPIRES_AT_HEADER = "X-Mailer-Expires-At"
IDEMPOTENCY_KEY_HEADER = "X-Mailer-Idempotency-Key"
CONTROL_HEADERS = frozenset(
    h.lower() for h in (PRIORITY_HEADER, SEND_AT_HEADER, EXPIRES_AT_HEADER, IDEMPOTENCY_KEY_HEADER)
)
# Headers Django always writes; as extra headers they would appear twice.
_SET_BY_DJANGO = {
    "subject": "from the subject argument",
    "mime-version": "",
    "content-type": "from the body, alternatives and attachments",
    "content-transfer-encoding": "from the body's content",
}
if not MODERN_EMAIL:
    # DJANGO_COMPAT(<6.0): Django 5.2 sends str(value): numbers and dates too (not bytes).
    _HEADER_VALUE_TYPES = (str, Promise, int, float, datetime.date)
# Transfer encodings that put a part's text on the wire as it is.
_RAW_ENCODINGS = {"", "7bit", "8bit", "binary"}


def check_address(address: Any, field: str) -> str:
    """Return ``address`` as text if it is one valid mailbox, else raise InvalidAddress."""
    if type(address) is str and (
        _SIMPLE_ADDRESS.fullmatch(address) or _SIMPLE_NAME_ADDR.fullmatch(address)
    ):
        return address  # the common case: plain ASCII, no control characters possible
    if address is None:
        raise InvalidAddress(f"{field}: an address is None.")
    if not isinstance(address, str | Promise):
        raise InvalidAddress(f"{field}: {address!r} is not an address string.")
    text = force_str(address)
    if _FORBIDDEN_IN_HEADER.search(text):
        raise InvalidAddress(
            f"{field}: {text!r} contains a line break, NUL or other control character."
        )
    if _SIMPLE_ADDRESS.fullmatch(text) or _SIMPLE_NAME_ADDR.fullmatch(text):
        return text
    _check_unicode(text, f"{field}: the address {text!r}", InvalidAddress)
    problem = _address_problem(text)
    if problem:
        raise InvalidAddress(f"{field}: {text!r} {problem}.")
    return text


@functools.lru_cache(maxsize=4096)
def _address_problem(text: str) -> str | None:
    """Why ``text`` is not one valid mailbox (None: it is). Cached: senders repeat."""
    try:
        parsed = AddressHeader.value_parser(text)
        # The parser fails on some inputs, and all_defects too (" .@", "a@[" on Python 3.11).
        defects = {str(defect) for defect in parsed.all_defects}
    except (HeaderParseError, IndexError, ValueError, AttributeError, TypeError) as error:
        return f"is not a valid address ({error})"
    # Django accepts local mailboxes such as "webmaster" (its ticket #15042).
    defects.discard("addr-spec local part with no domain")
    # A non-ASCII local part is fine here: it is delivered with SMTPUTF8.
    defects.discard("local-part contains non-ASCII characters)")
    if defects:
        return f"is not a valid address ({'; '.join(defects)})"
    if len(parsed.all_mailboxes) != 1 or not parsed.all_mailboxes[0].local_part:
        return "must be exactly one address"
    mailbox = parsed.all_mailboxes[0]
    if not mailbox.domain and not (text.isascii() and text.strip() == mailbox.local_part):
        return "has no domain"  # only a bare local mailbox ("webmaster") goes without one
    if mailbox.domain and not mailbox.domain.isascii():
        try:
            punycode(mailbox.domain)  # how Django sends it without SMTPUTF8
        except UnicodeError as error:
            return f"has an invalid domain ({error})"
    return None


def recipient_list(value: Any, field: str) -> list[str]:
    """Any iterable of addresses as a list (as Django's ``send_mail`` takes), checked.

    A plain string is refused: Django would otherwise send to each of its characters.
    """
    if isinstance(value, str | bytes | Promise) or not isinstance(value, Iterable):
        raise InvalidRecipientList(
            f"{field} must be a list or tuple of addresses, not {type(value).__name__} {value!r}."
        )
    addresses = list(value)
    for address in addresses:
        check_address(address, field)
    return addresses


def check_recipient_list(value: Any, field: str) -> list[str]:
    """A message's list (or tuple) of valid addresses; a plain string is refused, as Django does."""
    if not value and (value is None or isinstance(value, list | tuple)):
        return []
    if not isinstance(value, list | tuple):
        raise InvalidRecipientList(
            f"{field} must be a list or tuple of addresses, not {type(value).__name__} {value!r}."
        )
    return [check_address(address, field) for address in value]


def check_header(name: Any, value: Any) -> None:
    """A header Django can render: a token name, a value with no line break or NUL."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise InvalidHeader(f"Invalid header name {name!r}.")
    if name.lower() == "bcc":
        raise InvalidHeader('Bcc is not a valid header; use the "bcc" argument instead.')
    if name.lower() in _SET_BY_DJANGO:
        # Django sets these itself: Django 6 refuses a second one, Django 5.2 sends two.
        how = _SET_BY_DJANGO[name.lower()]
        raise InvalidHeader(f"{name} is set by Django{' ' + how if how else ''}; not a header.")
    date_header = name.lower() in _DATE_HEADERS and isinstance(value, datetime.datetime)
    if not isinstance(value, _HEADER_VALUE_TYPES) and not date_header:
        raise InvalidHeader(
            f"Header {name!r} must be text, not {type(value).__name__} {value!r:.40}."
        )
    if isinstance(value, bytes):  # Django 6 decodes them as UTF-8
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise InvalidHeader(f"Header {name!r} is bytes that are not UTF-8.") from None
    if isinstance(value, str | Promise):
        text = force_str(value)
        if _FORBIDDEN_IN_HEADER.search(text):
            raise InvalidHeader(
                f"Header {name!r} contains a line break, NUL or other control character: {text!r}."
            )
        _check_unicode(text, f"Header {name!r}", InvalidHeader)
        if name.lower() == "message-id" and not text.isascii():
            # It cannot be encoded (and the queue keeps it as the message's identity).
            raise InvalidHeader(f"Message-ID must be ASCII: {text!r}.")


def check_text(value: Any, what: str) -> None:
    """Text sent as it is (8bit) must hold no NUL, and be valid Unicode.

    Bytes count as text when they are UTF-8, as Django decodes them then.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return  # Django sends it base64-encoded as application/octet-stream
    if isinstance(value, str | Promise):
        text = force_str(value)
        if "\x00" in text:
            raise InvalidMessage(f"{what} contains a NUL character, which cannot be sent.")
        _check_unicode(text, what)


def _check_unicode(text: str, what: str, error: type[InvalidMessage] = InvalidMessage) -> None:
    """Text with a lone surrogate cannot be encoded: not for the database, not for SMTP."""
    if _SURROGATE.search(text):
        raise error(f"{what} is not valid Unicode (it holds a lone surrogate).")


def validate(message: EmailMessage) -> list[str]:
    """Check ``message`` for anything that could not be delivered; return its recipients.

    Raises a subclass of :class:`~mailer.exceptions.InvalidMessage`.
    """
    subject = force_str(message.subject)
    if _FORBIDDEN_IN_HEADER.search(subject):
        raise InvalidHeader(
            f"The subject contains a line break, NUL or other control character: {subject!r}."
        )
    _check_unicode(subject, "The subject", InvalidHeader)
    check_address(message.from_email, "from_email")
    recipients: list[str] = []
    for field in _RECIPIENT_FIELDS:
        checked = check_recipient_list(getattr(message, field), field)
        if field != "reply_to":
            recipients.extend(checked)
    if not isinstance(message.extra_headers, Mapping):
        raise InvalidHeader(f"headers must be a dict, not {type(message.extra_headers).__name__}.")
    for name, value in message.extra_headers.items():
        if isinstance(name, str) and name.lower() in CONTROL_HEADERS:
            continue  # read and removed by the queue (which checks them), never sent
        check_header(name, value)
        if name.lower() in _ADDRESS_HEADERS and isinstance(value, str | Promise):
            for part in _split_addresses(force_str(value)):
                check_address(part, f"header {name}")
    _check_content_types(message)
    check_text(message.body, "The body")
    for content, mimetype in getattr(message, "alternatives", ()):
        check_mime_type(mimetype, "An alternative's MIME type")
        if str(mimetype).startswith("text/"):
            check_text(content, f"The {mimetype} alternative")
    for attachment in message.attachments:
        _check_attachment(attachment)
    return recipients


def check_mime_type(value: Any, what: str) -> None:
    """A MIME type written into a Content-Type header: "type/subtype", perhaps with parameters."""
    _check_content_type(value, _MIME_TYPE, what, "a MIME type such as 'application/pdf'")


def _check_content_types(message: EmailMessage) -> None:
    """The subtypes and the charset Django writes into the message's Content-Type headers."""
    for name in ("content_subtype", "mixed_subtype", "alternative_subtype", "encoding"):
        value = getattr(message, name, None)
        if value is None and (name == "encoding" or not hasattr(message, name)):
            continue  # Django's default charset, or a class without this subtype
        if isinstance(value, email.charset.Charset):
            value = str(value)
        what = f"The message's {name}"
        _check_content_type(value, _SUBTYPE, what, "a MIME token such as 'plain' or 'utf-8'")


def _check_content_type(value: Any, grammar: re.Pattern[str], what: str, kind: str) -> None:
    text = force_str(value) if isinstance(value, str | Promise) else None
    if text is None or not grammar.fullmatch(text):
        raise InvalidContentType(
            f"{what} must be {kind}, with no line break or control character, not {value!r:.80}."
        )


def _check_attachment(attachment: Any) -> None:
    if isinstance(attachment, email.message.Message):
        _check_part(attachment)
        return
    if not isinstance(attachment, tuple) or len(attachment) != 3:
        raise InvalidMessage(
            "An attachment must be a MIME part or a (filename, content, mimetype) tuple, "
            f"not {attachment!r:.80}."
        )
    filename, content, mimetype = attachment
    if filename is not None:
        check_header("filename", filename)
    if content is None:
        raise InvalidMessage(f"Attachment {filename!r} has no content.")
    if mimetype is None:
        # What EmailMessage.attach() does; the queue stores the guessed type.
        if filename is None:
            raise InvalidMessage("An attachment without a MIME type needs a file name.")
        mimetype = mimetypes.guess_type(force_str(filename))[0] or "application/octet-stream"
    check_mime_type(mimetype, f"The MIME type of attachment {filename!r}")
    if isinstance(content, EmailMessage):
        validate(content)
    elif isinstance(content, email.message.Message):
        _check_part(content)
    elif not isinstance(content, str | bytes | bytearray | memoryview | Promise):
        raise InvalidMessage(
            f"Attachment {filename!r} must hold text, bytes or an email message, "
            f"not {type(content).__name__}."
        )
    elif str(mimetype).startswith("text/"):
        check_text(content, f"Text attachment {filename!r}")


def _check_part(part: email.message.Message) -> None:
    """A MIME part's headers hold no injected line; text that travels unencoded no NUL."""
    for sub in part.walk():
        for name, value in sub.raw_items():  # as stored: items() would hide line breaks
            if _FORBIDDEN_IN_HEADER.search(_FOLD.sub("", str(name) + ": " + str(value))):
                raise InvalidHeader(
                    f"A {sub.get_content_type()} attachment's header {name!r} contains a line "
                    f"break, NUL or other control character: {str(value)!r:.80}."
                )
        if sub.is_multipart():
            continue
        encoding = str(sub.get("Content-Transfer-Encoding", "")).strip().lower()
        payload = sub.get_payload()
        if encoding in _RAW_ENCODINGS and isinstance(payload, str) and "\x00" in payload:
            raise InvalidMessage(
                f"A {sub.get_content_type()} attachment contains a NUL character, "
                "which cannot be sent unencoded."
            )


def _split_addresses(value: str) -> Iterable[str]:
    """Split a header's address list on commas outside quotes and angle brackets."""
    depth, quoted, start = 0, False, 0
    for index, char in enumerate(value):
        if char == '"' and (index == 0 or value[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            part = value[start:index].strip()
            if part:
                yield part
            start = index + 1
    tail = value[start:].strip()
    if tail:
        yield tail


# Longest idempotency key, in characters: the length of a CharField every database indexes.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# C0 and C1 controls, line and paragraph separators, lone surrogates: a key holding one
# could forge lines in a log, and a lone surrogate cannot be stored.
_NOT_IN_KEY = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def check_idempotency_key(key: Any, what: str = "idempotency_key") -> str:
    """``key`` if it can be an idempotency key: a str of 1 to 255 printable characters."""
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(
            f"{what} must be a str, not {type(key).__name__} {key!r:.60}; "
            "make one that says what it is about, such as f'receipt-{order.pk}'."
        )
    if not key:
        raise InvalidIdempotencyKey(f"{what} is empty; leave it out (None) for no key.")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"{what} is {len(key)} characters long; at most {MAX_IDEMPOTENCY_KEY_LENGTH} "
            f"are allowed (a hash of a longer key will do): {key[:40]!r}..."
        )
    bad = _NOT_IN_KEY.search(key)
    if bad:
        kind = "a lone surrogate" if _SURROGATE.match(bad.group()) else "a control character"
        raise InvalidIdempotencyKey(f"{what} {key!r:.80} holds {kind}, {bad.group()!r}.")
    return key


def address_key(address: str) -> str:
    """The lowercased addr-spec of ``address`` ("Name <A@B>" -> "a@b"): how the don't-send
    list and the recorded results of recipients compare addresses."""
    if "<" in address:
        address = parseaddr(address)[1] or address
    return address.strip().lower()

"""Checks an email must pass before it is queued.

Everything Django (or the SMTP server) would reject at delivery time is
rejected here instead, in the caller, with an exception from
:mod:`mailer.exceptions` -- so a bad message never reaches the queue.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import AddressHeader
from typing import Any

from django.core.mail import EmailMessage
from django.utils.encoding import force_str
from django.utils.functional import Promise

from .exceptions import InvalidAddress, InvalidHeader, InvalidMessage, InvalidRecipientList

# A bare ASCII addr-spec with nothing a parser could misread: the common case,
# checked without the (slow) full RFC 5322 parser.
_SIMPLE_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)
# The same inside angle brackets after a display name of plain words ("Shop <a@b.c>").
_SIMPLE_NAME_ADDR = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <" + _SIMPLE_ADDRESS.pattern + ">")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':'
_FORBIDDEN_IN_HEADER = ("\r", "\n", "\x00")
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "reply_to")


def check_address(address: Any, field: str) -> str:
    """Return ``address`` as text if it is one valid mailbox, else raise InvalidAddress."""
    if address is None:
        raise InvalidAddress(f"{field}: an address is None.")
    if not isinstance(address, str | Promise):
        raise InvalidAddress(f"{field}: {address!r} is not an address string.")
    text = force_str(address)
    if "\r" in text or "\n" in text or "\x00" in text:  # _FORBIDDEN_IN_HEADER, unrolled
        raise InvalidAddress(f"{field}: {text!r} contains a line break or NUL.")
    if _SIMPLE_ADDRESS.fullmatch(text) or _SIMPLE_NAME_ADDR.fullmatch(text):
        return text
    problem = _address_problem(text)
    if problem:
        raise InvalidAddress(f"{field}: {text!r} {problem}.")
    return text


@functools.lru_cache(maxsize=4096)
def _address_problem(text: str) -> str | None:
    """Why ``text`` is not one valid mailbox (None: it is). Cached: senders repeat."""
    try:
        parsed = AddressHeader.value_parser(text)
    except (HeaderParseError, IndexError, ValueError) as error:
        return f"is not a valid address ({error})"
    defects = {str(defect) for defect in parsed.all_defects}
    # Django accepts local mailboxes such as "webmaster" (its ticket #15042).
    defects.discard("addr-spec local part with no domain")
    # A non-ASCII local part is fine here: it is delivered with SMTPUTF8.
    defects.discard("local-part contains non-ASCII characters)")
    if defects:
        return f"is not a valid address ({'; '.join(defects)})"
    if len(parsed.all_mailboxes) != 1 or not parsed.all_mailboxes[0].local_part:
        return "must be exactly one address"
    return None


def check_recipient_list(value: Any, field: str) -> list[str]:
    """A list (or tuple) of valid addresses; a plain string is refused, as Django does."""
    if value is None:
        return []
    if isinstance(value, str | Promise) or not isinstance(value, list | tuple):
        raise InvalidRecipientList(
            f"{field} must be a list or tuple of addresses, not {type(value).__name__} {value!r}."
        )
    return [check_address(address, field) for address in value]


def check_header(name: Any, value: Any) -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise InvalidHeader(f"Invalid header name {name!r}.")
    if name.lower() == "bcc":
        raise InvalidHeader('Bcc is not a valid header; use the "bcc" argument instead.')
    if isinstance(value, str | Promise):
        text = force_str(value)
        if any(char in text for char in _FORBIDDEN_IN_HEADER):
            raise InvalidHeader(f"Header {name!r} contains a line break or NUL: {text!r}.")


def check_text(value: Any, what: str) -> None:
    if isinstance(value, str | Promise) and "\x00" in force_str(value):
        raise InvalidMessage(f"{what} contains a NUL character, which cannot be sent.")


def validate(message: EmailMessage) -> list[str]:
    """Check ``message`` for anything that could not be delivered; return its recipients.

    Raises a subclass of :class:`~mailer.exceptions.InvalidMessage`.
    """
    subject = force_str(message.subject)
    if any(char in subject for char in _FORBIDDEN_IN_HEADER):
        raise InvalidHeader(f"The subject contains a line break or NUL: {subject!r}.")
    check_address(message.from_email, "from_email")
    recipients: list[str] = []
    for field in _RECIPIENT_FIELDS:
        checked = check_recipient_list(getattr(message, field), field)
        if field != "reply_to":
            recipients.extend(checked)
    for name, value in message.extra_headers.items():
        check_header(name, value)
        if name.lower() in {"from", "to", "cc", "reply-to", "sender"} and isinstance(value, str):
            for part in _split_addresses(value):
                check_address(part, f"header {name}")
    check_text(message.body, "The body")
    for content, mimetype in getattr(message, "alternatives", ()):
        if str(mimetype).startswith("text/"):
            check_text(content, f"The {mimetype} alternative")
    for attachment in message.attachments:
        if isinstance(attachment, tuple) and len(attachment) == 3:
            filename, content, mimetype = attachment
            if filename is not None:
                check_header("filename", filename)
            if mimetype and str(mimetype).startswith("text/"):
                check_text(content, f"Text attachment {filename!r}")
    return recipients


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

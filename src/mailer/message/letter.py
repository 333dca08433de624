"""A stored message read once for delivery: its envelope, and its bytes.

The engine reads each claimed row into a :class:`Letter`. The envelope
(sender, recipients, Message-ID) comes straight from the stored document;
the bytes to send come from :func:`mailer.message.render.render` when it
renders the document, so a message Django's own classes describe never
becomes an ``EmailMessage`` on its way to an SMTP server. Django builds the
``EmailMessage`` only when something needs it (:attr:`Letter.email`): a
backend other than SMTP (console, locmem, anymail's ESP APIs), a message
the renderer leaves to Django (a class with its own ``message()``, an
address only SMTPUTF8 carries...), or a document with stored attributes,
which Django checks as it rebuilds the message.
"""

from __future__ import annotations

import binascii
import json
from email.utils import getaddresses
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.utils.encoding import force_str

from mailer import compat
from mailer.exceptions import UndecodableMessage
from mailer.message import codec
from mailer.message.parts import untag
from mailer.message.render import render

# What json.loads and a document of the wrong shape may raise while read (as codec.decode).
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error)
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to", "sender"})


class Letter:
    """A stored message: what delivery reads from its document, and its bytes on demand."""

    __slots__ = ("_email", "doc", "encoding", "from_email", "message_id")

    def __init__(self, doc: dict[str, Any]) -> None:
        """``doc`` is a document :func:`load` checked."""
        self.doc = doc
        self.from_email: str = doc["from_email"]
        self.encoding = str(doc.get("encoding") or django_settings.DEFAULT_CHARSET)
        self.message_id = _message_id(doc["headers"])
        self._email: EmailMessage | None = None

    @classmethod
    def load(cls, data: str | bytes) -> Letter:
        """The letter stored as ``data``; UndecodableMessage if it is not a stored message
        (for exactly the rows ``codec.decode`` refuses)."""
        try:
            doc = json.loads(data)
            codec.check_document(doc)
            letter = cls(doc)
            if "attrs" in doc:
                letter.email  # noqa: B018 -- stored attributes are checked as Django rebuilds it
            return letter
        except UndecodableMessage:
            raise
        except _UNREADABLE as error:
            raise UndecodableMessage(f"Stored message data cannot be decoded: {error}") from error

    @property
    def email(self) -> EmailMessage:
        """The ``EmailMessage`` the document describes, built by Django the first time."""
        if self._email is None:
            self._email = codec.from_document(self.doc)
        return self._email

    def recipients(self) -> list[str]:
        """Every recipient, as ``EmailMessage.recipients()`` gives them: To, Cc, then Bcc."""
        doc = self.doc
        return [address for address in (*doc["to"], *doc["cc"], *doc["bcc"]) if address]

    def addresses(self, recipients: list[str]) -> list[str]:
        """Every address of the envelope and of the headers (which SMTPUTF8 must carry too)."""
        doc = self.doc
        found = [self.from_email, *recipients, *doc["to"], *doc["cc"], *doc["reply_to"]]
        for name, value in doc["headers"].items():
            if name.lower() in _ADDRESS_HEADERS:
                text = value if isinstance(value, str) else str(untag(value))
                found += [address for _, address in getaddresses([text]) if address]
        return found

    def render(self, *, utf8: bool = False) -> bytes:
        """The bytes to send: rendered from the document, or by Django where it must."""
        data = None if utf8 else render(self.doc)
        if data is None:
            data = compat.render(self.email, utf8=utf8)
        return data


def _message_id(headers: dict[str, Any]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "message-id":
            return force_str(value if isinstance(value, str) else untag(value))
    return None


__all__ = ["Letter"]

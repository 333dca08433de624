"""A stored document read for rendering: its fields, typed, or Unsupported.

:func:`read` takes the JSON document :mod:`mailer.message.codec` makes and keeps
what Django's ``message()`` looks at, checked on the way: the class must
render as Django's own (``EmailMessage``, ``EmailMultiAlternatives``, or a
subclass allowed by ``MAILER_MESSAGE_CLASSES`` that overrides none of their
rendering methods), and every value must be of a kind the renderer knows.
Anything else raises :class:`~mailer.message.tree.Unsupported`.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.module_loading import import_string

from mailer.compat import MODERN_EMAIL
from mailer.conf import settings
from mailer.message.tree import MAX_LINE, Unsupported, crlf

EMAIL_MESSAGE = "django.core.mail.message.EmailMessage"
EMAIL_MULTI_ALTERNATIVES = "django.core.mail.message.EmailMultiAlternatives"
_BUILTIN: dict[str, type[EmailMessage]] = {
    EMAIL_MESSAGE: EmailMessage,
    EMAIL_MULTI_ALTERNATIVES: EmailMultiAlternatives,
}
# The methods through which Django turns an EmailMessage into MIME (both versions).
_RENDERING_METHODS = (
    "message",
    "_create_message",
    "_create_attachments",
    "_create_alternatives",
    "_create_mime_attachment",
    "_create_attachment",
    "_add_bodies",
    "_add_attachments",
    "_add_attachment",
    "_set_list_header_if_not_empty",
    "_idna_encode_address_header_domains",
)
# DJANGO_COMPAT(<6.0): Django 6 refuses these attributes; 5.2 makes them the multipart subtypes.
_LEGACY_SUBTYPES = ("mixed_subtype", "alternative_subtype")
# Nested message/rfc822 documents deeper than this are left to Django.
_MAX_DEPTH = 8

HeaderValue = str | bytes | int | float | datetime.date


@dataclass
class StoredPart:
    """A MIME part stored as bytes: sent as it was stored, with CRLF line ends."""

    data: bytes
    modern: bool  # an email.message.MIMEPart (else an email.mime part)


@dataclass
class File:
    """A ``(filename, content, mimetype)`` attachment."""

    filename: str | None
    content: str | bytes | Document | StoredPart
    maintype: str
    subtype: str


Attachment = StoredPart | File


@dataclass
class Document:
    """The fields of a stored message that decide its MIME."""

    subject: str
    body: str | bytes
    from_email: str
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    headers: list[tuple[str, HeaderValue]]
    alternatives: list[tuple[str | bytes, str, str]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    content_subtype: str = "plain"
    encoding: str | None = None
    mixed_subtype: str = "mixed"
    alternative_subtype: str = "alternative"

    def header(self, name: str) -> HeaderValue | None:
        """The value of extra header ``name`` (exact name, as Django looks it up), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def read(doc: Mapping[str, Any], depth: int = 0) -> Document:
    """The :class:`Document` of a stored message; Unsupported if Django must render it."""
    if not isinstance(doc, Mapping) or doc.get("v") != 1 or depth > _MAX_DEPTH:
        raise Unsupported("not a stored message of format 1")
    has_alternatives = bool(doc.get("alternatives"))
    _check_class(str(doc.get("class", EMAIL_MESSAGE)), doc, has_alternatives)
    headers = doc["headers"]
    if not isinstance(headers, dict):
        raise Unsupported("headers that are not an object")
    return Document(
        subject=_text(doc["subject"]),
        body=_content(doc["body"]),
        from_email=_text(doc["from_email"]),
        to=_addresses(doc["to"]),
        cc=_addresses(doc["cc"]),
        reply_to=_addresses(doc["reply_to"]),
        headers=[(_text(name), _header_value(value)) for name, value in headers.items()],
        alternatives=[_alternative(item) for item in doc.get("alternatives", ())],
        attachments=[_attachment(item, depth) for item in doc.get("attachments", ())],
        content_subtype=_text(doc.get("content_subtype", "plain")),
        encoding=None if doc.get("encoding") is None else _text(doc["encoding"]),
        mixed_subtype=_text(doc.get("mixed_subtype", "mixed")),
        alternative_subtype=_text(doc.get("alternative_subtype", "alternative")),
    )


def _check_class(path: str, doc: Mapping[str, Any], has_alternatives: bool) -> None:
    """Unsupported unless the stored class renders exactly as Django's own classes."""
    cls = _BUILTIN.get(path) or _allowed_class(path)
    if has_alternatives and not issubclass(cls, EmailMultiAlternatives):
        cls = EmailMultiAlternatives  # what storage rebuilds it as
    base = EmailMultiAlternatives if issubclass(cls, EmailMultiAlternatives) else EmailMessage
    if cls is not base and any(
        getattr(cls, name, None) is not getattr(base, name, None) for name in _RENDERING_METHODS
    ):
        raise Unsupported(f"{path} renders its own MIME")
    if MODERN_EMAIL:
        for name in _LEGACY_SUBTYPES:
            if name in doc or hasattr(cls, name):
                raise Unsupported(f"{name}, which Django 6 refuses")


_classes: dict[str, type[EmailMessage] | None] = {}


def _allowed_class(path: str) -> type[EmailMessage]:
    """The class at ``path`` if MAILER_MESSAGE_CLASSES allows it (as storage rebuilds it)."""
    if path not in settings.MESSAGE_CLASSES:
        raise Unsupported(f"{path} is not an allowed message class")
    if path not in _classes:
        try:
            found = import_string(path)
        except ImportError:
            found = None
        ok = isinstance(found, type) and issubclass(found, EmailMessage)
        _classes[path] = found if ok else None
    cls = _classes[path]
    if cls is None:
        raise Unsupported(f"{path} cannot be imported")
    return cls


def _text(value: Any) -> str:
    if type(value) is not str:
        raise Unsupported(f"{type(value).__name__} where text is stored")
    return value


def _addresses(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise Unsupported("an address list that is not a list")
    return [_text(item) for item in value]


def _bytes(value: dict[str, Any]) -> bytes:
    if value.keys() != {"$bytes"} or not isinstance(value["$bytes"], str):
        raise Unsupported("a tagged value other than bytes")
    return base64.b64decode(value["$bytes"], validate=True)


def _content(value: Any) -> str | bytes:
    """A body, alternative or attachment content: text or tagged bytes."""
    if type(value) is str:
        return value
    if isinstance(value, dict):
        return _bytes(value)
    raise Unsupported(f"content of type {type(value).__name__}")


def _header_value(value: Any) -> HeaderValue:
    if type(value) in (str, int, float):
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$datetime" and isinstance(inner, str):
            return datetime.datetime.fromisoformat(inner)
        if tag == "$date" and isinstance(inner, str):
            return datetime.date.fromisoformat(inner)
        return _bytes(value)
    raise Unsupported(f"a header value of type {type(value).__name__}")


def _mimetype(value: Any) -> tuple[str, str]:
    maintype, slash, subtype = _text(value).partition("/")
    if not slash:
        raise Unsupported(f"MIME type {value!r}")
    return maintype, subtype


def _alternative(item: Any) -> tuple[str | bytes, str, str]:
    if not (isinstance(item, list) and len(item) == 2):
        raise Unsupported("an alternative that is not [content, mimetype]")
    return (_content(item[0]), *_mimetype(item[1]))


def _attachment(item: Any, depth: int) -> Attachment:
    if not isinstance(item, dict):
        raise Unsupported("an attachment that is not an object")
    if "mime" in item:
        return stored_part(item)
    filename = item.get("filename")
    if filename is not None:
        filename = _text(filename)
    maintype, subtype = _mimetype(item.get("mimetype"))
    stored = item.get("content")
    content: str | bytes | Document | StoredPart
    if isinstance(stored, dict) and stored.keys() == {"$message"}:
        content = read(stored["$message"], depth + 1)
    elif isinstance(stored, dict) and stored.keys() == {"$part"}:
        content = stored_part(stored["$part"])
    else:
        content = _content(stored)
    return File(filename, content, maintype, subtype)


def stored_part(item: Any) -> StoredPart:
    """A stored MIME part, if sending its stored bytes is what Django would send.

    Django parses the part and writes it again with the message's policy.
    Its headers come out the same when none was folded for storage beyond
    78 octets; anything longer is left to Django.
    """
    if not isinstance(item, dict) or item.get("policy") not in ("default", "compat32"):
        raise Unsupported("an unknown kind of stored MIME part")
    raw = base64.b64decode(_text(item["mime"]), validate=True)
    data = crlf(raw)
    head, _, body = data.partition(b"\r\n\r\n")
    if any(len(line) > 78 for line in head.split(b"\r\n")):
        raise Unsupported("a stored part with a long header line")
    if body and max(map(len, body.split(b"\r\n"))) > MAX_LINE:
        raise Unsupported("a stored part with a line over 998 octets")
    return StoredPart(data, item["policy"] == "default")


def verbatim_message(content: str | bytes) -> bytes:
    """A message/rfc822 attachment given as text or bytes, if Django would send it as it is.

    Django parses it and writes it again. That gives back the same message
    when it is printable ASCII with one header field a line, each at most
    78 octets (so nothing is refolded), and no multipart inside (whose
    boundaries would be checked and chosen again). Anything else is left
    to Django.
    """
    data = crlf(content.encode("utf-8") if isinstance(content, str) else content)
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator or not data.isascii():
        raise Unsupported("a message/rfc822 attachment that is not plain ASCII")
    for line in head.split(b"\r\n"):
        if not _HEADER_LINE.fullmatch(line):
            raise Unsupported("a message/rfc822 attachment with folded or long header lines")
        name, _, value = line.partition(b":")
        if name.lower() == b"content-type" and value.strip().lower().startswith(
            (b"multipart/", b"message/")
        ):
            raise Unsupported("a message/rfc822 attachment holding parts")
    if body and max(map(len, body.split(b"\r\n"))) > MAX_LINE:
        raise Unsupported("a message/rfc822 attachment with a line over 998 octets")
    return data


_HEADER_LINE = re.compile(rb"[!-9;-~]+:[\x20-\x7e]{0,76}")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Headers Django writes itself (set from fields, or refused as extra headers).
_NOT_EXTRA = frozenset(
    {
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "bcc",
        "resent-bcc",
    }
)
# Headers a message may hold once (Django 6 refuses a second; 5.2 would send both).
_ONCE = frozenset({"date", "orig-date", "message-id", "sender"})
# Extra headers Django replaces by its own From, To, Cc and Reply-To.
SET_FROM_FIELDS = frozenset({"from", "to", "cc", "reply-to"})


def extra_headers(doc: Document) -> list[tuple[str, HeaderValue]]:
    """The extra headers Django adds after its own, in order; Unsupported for odd ones."""
    extra: list[tuple[str, HeaderValue]] = []
    once: set[str] = set()
    for name, value in doc.headers:
        lower = name.lower()
        if lower in SET_FROM_FIELDS:
            continue
        if lower in _NOT_EXTRA or not _HEADER_NAME.fullmatch(name):
            raise Unsupported(f"extra header {name!r}")
        if lower in _ONCE:
            if lower in once:
                raise Unsupported(f"two {name} headers")
            once.add(lower)
        extra.append((name, value))
    return extra


def has_header(doc: Document, lower: str) -> bool:
    """Does the message have extra header ``lower`` (any case)?"""
    return any(name.lower() == lower for name, _ in doc.headers)

"""How an email becomes stored data, and back.

A queued message is stored as one JSON document (format version 1) holding
the fields of the Django ``EmailMessage`` it came from -- never a pickle, so
nothing read from the database is ever executed. Rebuilding it gives an
``EmailMessage`` whose MIME is what Django would have produced from the
original: same headers, bodies, alternatives and attachments.

The document::

    {
      "v": 1,
      "class": "django.core.mail.message.EmailMultiAlternatives",
      "subject": "...", "body": "...", "from_email": "...",
      "to": [...], "cc": [...], "bcc": [...], "reply_to": [...],
      "headers": {"Message-ID": "<...>", ...},
      "alternatives": [["<html>...", "text/html"], ...],
      "attachments": [
        {"filename": "a.pdf", "mimetype": "application/pdf", "content": {"$bytes": "<base64>"}},
        {"mime": "<base64 of a whole MIME part>", "policy": "default" | "compat32"},
      ],
      "content_subtype": "plain",
      "attrs": {"tags": [...], "metadata": {...}}
    }

Optional keys are left out when they hold their default. Values that JSON
cannot carry are tagged: ``{"$bytes": base64}``, ``{"$datetime": iso}``,
``{"$date": iso}``. ``attrs`` keeps extra JSON-serialisable attributes of the
message (Anymail's ``tags``, ``metadata``, ``merge_data``, ``esp_extra``...).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.message
import email.parser
import email.policy
import json
import warnings
from collections.abc import Iterable
from email.mime.base import MIMEBase
from functools import cache
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import EmailAlternative, EmailAttachment, make_msgid
from django.core.mail.utils import DNS_NAME
from django.utils.encoding import force_str
from django.utils.functional import Promise
from django.utils.module_loading import import_string

from .conf import settings
from .exceptions import MailerWarning, UndecodableMessage

FORMAT_VERSION = 1

EMAIL_MESSAGE = "django.core.mail.message.EmailMessage"
EMAIL_MULTI_ALTERNATIVES = "django.core.mail.message.EmailMultiAlternatives"
_BUILTIN_CLASSES: dict[str, type[EmailMessage]] = {
    EMAIL_MESSAGE: EmailMessage,
    EMAIL_MULTI_ALTERNATIVES: EmailMultiAlternatives,
}

# Attributes carried by their own key in the document, or never stored.
_FIELDS = frozenset(
    {
        "subject",
        "body",
        "from_email",
        "to",
        "cc",
        "bcc",
        "reply_to",
        "extra_headers",
        "attachments",
        "alternatives",
        "content_subtype",
        "encoding",
        "mixed_subtype",
        "alternative_subtype",
        "connection",
        "_connection",
    }
)
# Class attributes Django lets instances override; stored only when they differ.
_SUBTYPE_DEFAULTS = {"mixed_subtype": "mixed", "alternative_subtype": "alternative"}


# -- Tagged JSON values -------------------------------------------------------


def _tag(value: Any) -> Any:
    """Make ``value`` JSON-serialisable, tagging bytes and dates; raise TypeError otherwise."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Promise):
        return force_str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, list | tuple):
        return [_tag(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("dictionary keys must be strings")
        return {key: _tag(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$bytes":
                return base64.b64decode(inner)
            if key == "$datetime":
                return datetime.datetime.fromisoformat(inner)
            if key == "$date":
                return datetime.date.fromisoformat(inner)
        return {key: _untag(item) for key, item in value.items()}
    return value


# -- Encoding -------------------------------------------------------------------


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_defaults: dict[type, dict[str, Any]] = {}


def _class_defaults(cls: type[EmailMessage]) -> dict[str, Any]:
    """Instance attributes a fresh ``cls()`` has; equal values need not be stored."""
    if cls not in _defaults:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _defaults[cls] = dict(vars(cls()))
        except Exception:
            _defaults[cls] = {}
    return _defaults[cls]


def _mime_part(part: email.message.Message) -> dict[str, str]:
    modern = isinstance(part, email.message.MIMEPart)
    raw = part.as_bytes()
    return {
        "mime": base64.b64encode(raw).decode("ascii"),
        "policy": "default" if modern else "compat32",
    }


def _encode_attachment(attachment: Any) -> dict[str, Any]:
    if isinstance(attachment, email.message.Message):
        return _mime_part(attachment)
    filename, content, mimetype = attachment
    if isinstance(content, EmailMessage):
        # A message/rfc822 attachment given as a Django message: keep its bytes.
        content = content.message().as_bytes()
    elif isinstance(content, email.message.Message):
        content = content.as_bytes()
    return {
        "filename": None if filename is None else force_str(filename),
        "mimetype": mimetype,
        "content": _tag(content),
    }


def _extra_attrs(message: EmailMessage) -> dict[str, Any]:
    defaults = _class_defaults(type(message))
    extra: dict[str, Any] = {}
    for name, value in vars(message).items():
        if name in _FIELDS or name.startswith("_"):
            continue
        if name in defaults and _same(defaults[name], value):
            continue
        try:
            extra[name] = _tag(value)
        except TypeError as error:
            warnings.warn(
                f"Attribute {name!r} of the queued message was dropped: {error}.",
                MailerWarning,
                stacklevel=4,
            )
    return extra


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def allowed_class_path(cls: type) -> str:
    """The class path to store: ``cls``'s own when it may be rebuilt, else Django's."""
    path = class_path(cls)
    if path in _BUILTIN_CLASSES or path in settings.MESSAGE_CLASSES:
        return path
    fallback = (
        EMAIL_MULTI_ALTERNATIVES if issubclass(cls, EmailMultiAlternatives) else EMAIL_MESSAGE
    )
    _warn_unknown_class(path, fallback)
    return fallback


@cache
def _warn_unknown_class(path: str, fallback: str) -> None:
    warnings.warn(
        f"{path} is not in MAILER_MESSAGE_CLASSES; queued messages of this class are "
        f"delivered as {fallback} (their extra attributes are kept).",
        MailerWarning,
        stacklevel=5,
    )


def to_document(message: EmailMessage) -> dict[str, Any]:
    """The JSON-ready dictionary that stores ``message``."""
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "class": allowed_class_path(type(message)),
        "subject": force_str(message.subject),
        "body": _tag(message.body),
        "from_email": _tag(message.from_email),
        "to": _tag(list(message.to)),
        "cc": _tag(list(message.cc)),
        "bcc": _tag(list(message.bcc)),
        "reply_to": _tag(list(message.reply_to)),
        "headers": {force_str(k): _tag(v) for k, v in message.extra_headers.items()},
    }
    alternatives = getattr(message, "alternatives", None)
    if alternatives:
        doc["alternatives"] = [[_tag(content), mimetype] for content, mimetype in alternatives]
    if message.attachments:
        doc["attachments"] = [_encode_attachment(a) for a in message.attachments]
    if message.content_subtype != "plain":
        doc["content_subtype"] = message.content_subtype
    if message.encoding is not None:
        doc["encoding"] = force_str(message.encoding)
    for name, default in _SUBTYPE_DEFAULTS.items():
        value = getattr(message, name, default)
        if value != default:
            doc[name] = value
    attrs = _extra_attrs(message)
    if attrs:
        doc["attrs"] = attrs
    return doc


def dumps(doc: dict[str, Any]) -> str:
    """The stored text of a document made by :func:`to_document`."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def encode(message: EmailMessage) -> str:
    """Serialise ``message`` to the text stored in ``Message.message_data``."""
    return dumps(to_document(message))


def assign_message_id(doc: dict[str, Any]) -> str:
    """Give a document a Message-ID header unless it has one; return the Message-ID."""
    headers: dict[str, Any] = doc["headers"]
    for name, value in headers.items():
        if name.lower() == "message-id":
            return str(value)
    headers["Message-ID"] = new = make_msgid(domain=DNS_NAME)
    return new


# -- Decoding -------------------------------------------------------------------


class _StoredMIMEBase(MIMEBase):
    """A legacy (compat32) MIME part rebuilt from bytes; still a ``MIMEBase``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        email.message.Message.__init__(self, *args, **kwargs)


def _decode_attachment(item: dict[str, Any]) -> Any:
    if "mime" in item:
        raw = base64.b64decode(item["mime"])
        if item.get("policy") == "default":
            part_class: Any = email.message.MIMEPart
            return email.parser.BytesParser(
                _class=part_class, policy=email.policy.default
            ).parsebytes(raw)
        return email.parser.BytesParser(_class=_StoredMIMEBase).parsebytes(raw)
    content = _untag(item["content"])
    return _attachment_tuple(item.get("filename"), content, item.get("mimetype"))


def _attachment_tuple(filename: Any, content: Any, mimetype: Any) -> Any:
    return EmailAttachment(filename, content, mimetype)


def resolve_class(path: str) -> type[EmailMessage]:
    """The class to rebuild a stored message as; unknown or disallowed paths fall back."""
    if path in _BUILTIN_CLASSES:
        return _BUILTIN_CLASSES[path]
    if path in settings.MESSAGE_CLASSES:
        try:
            cls = import_string(path)
        except ImportError:
            cls = None
        if isinstance(cls, type) and issubclass(cls, EmailMessage):
            return cls
    warnings.warn(
        f"Stored message class {path} is not available or not allowed by "
        "MAILER_MESSAGE_CLASSES; rebuilding it as EmailMultiAlternatives.",
        MailerWarning,
        stacklevel=3,
    )
    return EmailMultiAlternatives


def _instantiate(cls: type[EmailMessage]) -> EmailMessage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls()
    except Exception:
        return EmailMultiAlternatives()


def from_document(doc: dict[str, Any]) -> EmailMessage:
    """Rebuild the ``EmailMessage`` a document describes."""
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        version = doc.get("v") if isinstance(doc, dict) else None
        raise UndecodableMessage(f"Unknown stored message format version {version!r}.")
    cls = resolve_class(str(doc.get("class", EMAIL_MESSAGE)))
    message = _instantiate(cls)
    message.subject = doc["subject"]
    message.body = _untag(doc["body"])
    message.from_email = _untag(doc["from_email"])
    message.to = _untag(doc["to"])
    message.cc = _untag(doc["cc"])
    message.bcc = _untag(doc["bcc"])
    message.reply_to = _untag(doc["reply_to"])
    message.extra_headers = {name: _untag(value) for name, value in doc["headers"].items()}
    message.attachments = [_decode_attachment(item) for item in doc.get("attachments", ())]
    alternatives = [
        (_untag(content), mimetype) for content, mimetype in doc.get("alternatives", ())
    ]
    if alternatives or hasattr(message, "alternatives"):
        if not isinstance(message, EmailMultiAlternatives):
            message = _upgrade(message)
        assert isinstance(message, EmailMultiAlternatives)
        message.alternatives = _alternatives(alternatives)
    if "content_subtype" in doc:
        message.content_subtype = doc["content_subtype"]
    if "encoding" in doc:
        message.encoding = doc["encoding"]
    for name in _SUBTYPE_DEFAULTS:
        if name in doc:
            setattr(message, name, doc[name])
    for name, value in doc.get("attrs", {}).items():
        setattr(message, name, _untag(value))
    return message


def _alternatives(items: Iterable[tuple[Any, str]]) -> list[Any]:
    return [EmailAlternative(content, mimetype) for content, mimetype in items]


def _upgrade(message: EmailMessage) -> EmailMultiAlternatives:
    upgraded = EmailMultiAlternatives()
    for name, value in vars(message).items():
        if name not in {"connection", "_connection"}:
            setattr(upgraded, name, value)
    return upgraded


def decode(data: str | bytes) -> EmailMessage:
    """Rebuild the ``EmailMessage`` stored as ``data``; UndecodableMessage if it is not ours."""
    try:
        doc = json.loads(data)
        return from_document(doc)
    except UndecodableMessage:
        raise
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RecursionError,
        binascii.Error,
    ) as error:
        raise UndecodableMessage(f"Stored message data cannot be decoded: {error}") from error


# -- Message-ID -------------------------------------------------------------------


def header(message: EmailMessage, name: str) -> Any:
    """The value of extra header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in message.extra_headers.items():
        if key.lower() == wanted:
            return value
    return None


def message_id(message: EmailMessage) -> str | None:
    value = header(message, "Message-ID")
    return None if value is None else force_str(value)


def document_summary(data: str | None) -> dict[str, Any]:
    """Subject, recipients and Message-ID of stored data, for display; empty if undecodable."""
    if not data:
        return {}
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    return summarize(doc)


def summarize(doc: Any) -> dict[str, Any]:
    """The summary of a parsed document (or of the keys read so far); empty if not ours.

    Whatever the document holds, the values are strings (``message_id`` may be
    None) and the recipient lists are lists of strings, so callers can display
    and join them without checking.
    """
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        return {}
    headers = doc.get("headers")
    if not isinstance(headers, dict):
        headers = {}
    msgid = next((v for k, v in headers.items() if k.lower() == "message-id"), None)
    return {
        "subject": _display(doc.get("subject")),
        "from_email": _display(doc.get("from_email")),
        "to": _display_list(doc.get("to")),
        "cc": _display_list(doc.get("cc")),
        "bcc": _display_list(doc.get("bcc")),
        "message_id": None if msgid is None else _display(msgid),
    }


def _display(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _display_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [_display(value)]
    return [_display(item) for item in value]

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
      "content_subtype": "html",
      "encoding": "iso-8859-1",
      "mixed_subtype": "related", "alternative_subtype": "...",
      "attrs": {"tags": [...], "metadata": {...}, "send_at": {"$datetime": "..."}}
    }

Optional keys are left out when they hold their default. Values that JSON
cannot carry are tagged: ``{"$bytes": base64}``, ``{"$datetime": iso}``,
``{"$date": iso}``; a dictionary of the caller's whose only key starts with
``$`` is wrapped as ``{"$dict": {...}}`` so it is never mistaken for a tag.
``attrs`` keeps extra JSON-serialisable attributes of the message (Anymail's
``tags``, ``metadata``, ``merge_data``, ``esp_extra``, ``send_at``...);
other attributes are dropped with a :class:`~mailer.exceptions.MailerWarning`.
JSON has no tuples and no time zones: tuples come back as lists, and aware
datetimes keep their instant and UTC offset but not the zone's name.

Attachment contents beyond text and bytes:

* a ``message/rfc822`` attachment given as a Django ``EmailMessage`` is kept
  as a nested document, ``{"$message": {"v": 1, ...}}``, so that it is
  rendered with the policy of the message that carries it, as Django does;
* one given as a Python ``email.message.Message`` is kept as
  ``{"$part": {"mime": ..., "policy": ...}}``, like a MIME part attachment;
* a ``(filename, content, None)`` tuple is stored with the MIME type
  ``EmailMessage.attach()`` would have given it (guessed from the file name).

A MIME part is stored as its bytes, rendered with its own policy (``default``
for ``email.message.MIMEPart``, ``compat32`` for ``email.mime`` classes), and
parsed back into the same kind of object. Its headers are then reset from
their parsed values, so they are folded and encoded by the policy the whole
message is sent with, exactly as the original part's would be. (For a
``compat32`` part, header text that is not ASCII is kept in its RFC 2047
form.)

Decoding checks the document's shape; data that is not a document of this
format, or of another version, raises
:class:`~mailer.exceptions.UndecodableMessage`.
"""

from __future__ import annotations

import binascii
import email.generator
import email.message
import email.parser
import email.policy
import inspect
import json
import warnings
from collections.abc import Iterable
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import EmailAlternative, EmailAttachment, make_msgid
from django.core.mail.utils import DNS_NAME
from django.utils.encoding import force_str
from django.utils.module_loading import import_string

from mailer.conf import settings
from mailer.exceptions import InvalidMessage, MailerWarning, UndecodableMessage
from mailer.message.parts import decode_part, encode_part, normalise_attachment, tag, untag
from mailer.scrub import unstorable

FORMAT_VERSION = 1

EMAIL_MESSAGE = "django.core.mail.message.EmailMessage"
EMAIL_MULTI_ALTERNATIVES = "django.core.mail.message.EmailMultiAlternatives"
_BUILTIN_CLASSES: dict[str, type[EmailMessage]] = {
    EMAIL_MESSAGE: EmailMessage,
    EMAIL_MULTI_ALTERNATIVES: EmailMultiAlternatives,
}

# Attributes carried by their own key in the document, or never stored.
# What an EmailMessage says: its fields, stored by name (django-mailer's pickles too).
CONTENT_FIELDS = frozenset(
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
    }
)
_FIELDS = CONTENT_FIELDS | {"connection", "_connection"}
# Class attributes Django lets instances override; stored only when they differ.
_SUBTYPE_DEFAULTS = {"mixed_subtype": "mixed", "alternative_subtype": "alternative"}
_ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")


# -- Encoding -------------------------------------------------------------------


def class_path(cls: type) -> str:
    """The dotted path a class is stored under."""
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


def _encode_attachment(attachment: Any) -> dict[str, Any]:
    """An attachment as a JSON object: a MIME part, or file name, type and tagged content."""
    if isinstance(attachment, email.message.Message):
        return encode_part(attachment)
    try:
        filename, content, mimetype = attachment
    except (TypeError, ValueError):
        raise InvalidMessage(
            f"An attachment must be a MIME part or a (filename, content, mimetype) "
            f"tuple, not {attachment!r:.80}."
        ) from None
    filename, content, mimetype = normalise_attachment(filename, content, mimetype)
    if isinstance(content, EmailMessage):
        stored: Any = {"$message": to_document(content)}
    elif isinstance(content, email.message.Message):
        stored = {"$part": encode_part(content)}
    else:
        try:
            stored = tag(content)
        except TypeError as error:
            raise InvalidMessage(f"Attachment {filename!r} cannot be stored: {error}.") from None
    return {
        "filename": None if filename is None else force_str(filename),
        "mimetype": None if mimetype is None else force_str(mimetype),
        "content": stored,
    }


def _extra_attrs(message: EmailMessage) -> dict[str, Any]:
    """Attributes beyond Django's fields that differ from a fresh instance's (ESP options)."""
    defaults = _class_defaults(type(message))
    extra: dict[str, Any] = {}
    for name, value in vars(message).items():
        if name in _FIELDS or name.startswith("_"):
            continue
        if name in defaults and _same(defaults[name], value):
            continue
        try:
            tagged = tag(value)
            json.dumps(tagged, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as error:
            warnings.warn(
                f"Attribute {name!r} of the queued message was dropped: {error}.",
                MailerWarning,
                stacklevel=4,
            )
            continue
        extra[name] = tagged
    return extra


def _same(a: Any, b: Any) -> bool:
    """Is ``b`` the class default ``a``? Objects without ``__eq__`` compare by attributes."""
    try:
        if type(a) is not type(b):
            return False
        if a == b:
            return True
        compares_by_identity = not any("__eq__" in vars(k) for k in type(a).__mro__[:-1])
        if compares_by_identity and hasattr(a, "__dict__"):
            # e.g. Anymail's AnymailStatus: a fresh one is the default.
            mine, theirs = vars(a), vars(b)
            return mine.keys() == theirs.keys() and all(_same(mine[k], theirs[k]) for k in mine)
        return False
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
    warnings.warn(
        f"{path} is not in MAILER_MESSAGE_CLASSES; queued messages of this class are "
        f"delivered as {fallback} (their extra attributes are kept).",
        MailerWarning,
        stacklevel=4,
    )
    return fallback


def to_document(message: EmailMessage) -> dict[str, Any]:
    """The JSON-ready dictionary that stores ``message``."""
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "class": allowed_class_path(type(message)),
        "subject": force_str(message.subject),
        "body": tag(message.body),
        "from_email": tag(message.from_email),
        "to": tag(list(message.to)),
        "cc": tag(list(message.cc)),
        "bcc": tag(list(message.bcc)),
        "reply_to": tag(list(message.reply_to)),
        "headers": {force_str(k): tag(v) for k, v in message.extra_headers.items()},
    }
    alternatives = getattr(message, "alternatives", None)
    if alternatives:
        doc["alternatives"] = [
            [tag(content), force_str(mimetype)] for content, mimetype in alternatives
        ]
    if message.attachments:
        doc["attachments"] = [_encode_attachment(a) for a in message.attachments]
    if message.content_subtype != "plain":
        doc["content_subtype"] = force_str(message.content_subtype)
    if message.encoding is not None:
        doc["encoding"] = force_str(message.encoding)
    for name, default in _SUBTYPE_DEFAULTS.items():
        value = getattr(message, name, default)
        if value != default:
            doc[name] = force_str(value)
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


def _decode_attachment(item: Any) -> Any:
    """The attachment :func:`_encode_attachment` stored as ``item``."""
    if not isinstance(item, dict):
        raise UndecodableMessage(f"A stored attachment is {type(item).__name__}, not an object.")
    if "mime" in item:
        return decode_part(item)
    stored = item["content"]
    content: Any
    if isinstance(stored, dict) and stored.keys() == {"$message"}:
        content = from_document(stored["$message"])
    elif isinstance(stored, dict) and stored.keys() == {"$part"}:
        content = decode_part(stored["$part"])
    else:
        content = untag(stored)
    mimetype: Any = item.get("mimetype")
    return EmailAttachment(item.get("filename"), content, mimetype)


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
        stacklevel=4,
    )
    return EmailMultiAlternatives


def _instantiate(cls: type[EmailMessage]) -> EmailMessage:
    """A blank ``cls()``, or EmailMultiAlternatives (with a warning) if it needs arguments."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls()
    except Exception as error:
        warnings.warn(
            f"Stored message class {class_path(cls)} cannot be created without arguments "
            f"({error!r}); rebuilding it as EmailMultiAlternatives.",
            MailerWarning,
            stacklevel=4,
        )
        return EmailMultiAlternatives()


def _check_shape(doc: dict[str, Any]) -> None:
    """Raise UndecodableMessage unless ``doc`` has the fields of a stored message."""
    problem = _shape_problem(doc)
    if problem:
        raise UndecodableMessage(f"Stored message data is corrupt: {problem}.")


def _shape_problem(doc: dict[str, Any]) -> str | None:
    """What is wrong with ``doc``'s fields, or None. (Runs for every message sent.)"""
    for key in ("subject", "from_email"):
        if not isinstance(doc.get(key), str):
            return f"{key} is not text"
    if not isinstance(doc.get("body"), (str, dict)):
        return "body is not text"
    for key in _ADDRESS_FIELDS:
        value = doc.get(key)
        if not isinstance(value, list):
            return f"{key} is not a list of addresses"
        if not value:
            continue
        if not all(isinstance(a, str) for a in value):
            return f"{key} is not a list of addresses"
        if unstorable("".join(value)):  # (joining makes no NUL or surrogate)
            return f"{key} holds an address with NUL or a lone surrogate"
    if not isinstance(doc.get("headers"), dict):
        return "headers is not an object"
    for key, kind in _CONTAINERS:
        if key in doc and not isinstance(doc[key], kind):
            return f"{key} is not a {kind.__name__}"
    for item in doc.get("alternatives", ()):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
            return "an alternative is not [content, mimetype]"
    for key in _TEXT_FIELDS:
        if key in doc and not isinstance(doc[key], str):
            return f"{key} is not text"
    return None


_CONTAINERS: tuple[tuple[str, type], ...] = (
    ("alternatives", list),
    ("attachments", list),
    ("attrs", dict),
)
_TEXT_FIELDS = ("class", "content_subtype", "encoding", *_SUBTYPE_DEFAULTS)


def check_document(doc: Any) -> None:
    """Raise UndecodableMessage unless ``doc`` is a document of our format with its fields."""
    version = doc.get("v") if isinstance(doc, dict) else None
    if type(version) is not int or version != FORMAT_VERSION:
        raise UndecodableMessage(f"Unknown stored message format version {version!r}.")
    _check_shape(doc)


def from_document(doc: Any) -> EmailMessage:
    """Rebuild the ``EmailMessage`` a document describes."""
    check_document(doc)
    cls = resolve_class(doc.get("class", EMAIL_MESSAGE))
    message = _instantiate(cls)
    message.subject = doc["subject"]
    message.body = untag(doc["body"])
    message.from_email = doc["from_email"]
    message.to = list(doc["to"])
    message.cc = list(doc["cc"])
    message.bcc = list(doc["bcc"])
    message.reply_to = list(doc["reply_to"])
    message.extra_headers = {name: untag(value) for name, value in doc["headers"].items()}
    message.attachments = [_decode_attachment(item) for item in doc.get("attachments", ())]
    alternatives = [(untag(content), mimetype) for content, mimetype in doc.get("alternatives", ())]
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
        _check_attr(type(message), name)
        setattr(message, name, untag(value))
    return message


def _check_attr(cls: type, name: str) -> None:
    """Stored extra attributes are data: never a field of their own, a private name, or
    code the class defines (a method, a property...) that they would replace."""
    defined = inspect.getattr_static(cls, name, None)
    if (
        not name.isidentifier()
        or name.startswith("_")
        or name in _FIELDS
        or callable(defined)
        or hasattr(type(defined), "__get__")
    ):
        raise UndecodableMessage(f"Stored message data is corrupt: attrs may not set {name!r}.")


def _alternatives(items: Iterable[tuple[Any, str]]) -> list[Any]:
    return [EmailAlternative(content, mimetype) for content, mimetype in items]


def _upgrade(message: EmailMessage) -> EmailMultiAlternatives:
    """``message`` as an EmailMultiAlternatives, so stored alternatives have a place."""
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

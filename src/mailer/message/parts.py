"""Values and MIME parts as the stored JSON document holds them.

Tagged values (``{"$bytes": ...}``, ``{"$datetime": ...}``...), MIME parts kept as
their bytes with the policy they were made with, and attachments given as tuples;
see :mod:`mailer.message.codec` for the whole document.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.generator
import email.message
import email.parser
import email.policy
import io
import re
from email.mime.base import MIMEBase
from typing import Any

from django.core.mail import EmailMessage
from django.utils.encoding import force_str
from django.utils.functional import Promise

from mailer.exceptions import InvalidMessage, UndecodableMessage

# -- Tagged JSON values -------------------------------------------------------


def tag(value: Any) -> Any:
    """Make ``value`` JSON-serialisable, tagging bytes and dates; raise TypeError otherwise."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is list and all(type(item) is str for item in value):
        return list(value)  # a recipient list, the common case
    if isinstance(value, bool | int | float | str):
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
        return [tag(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("dictionary keys must be strings")
        tagged = {key: tag(item) for key, item in value.items()}
        if len(tagged) == 1 and next(iter(tagged)).startswith("$"):
            # {"$bytes": "..."} given by the caller must not come back as bytes.
            return {"$dict": tagged}
        return tagged
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def untag(value: Any) -> Any:
    """The value :func:`tag` was given; UndecodableMessage for an unknown tag."""
    if isinstance(value, list):
        return [untag(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key.startswith("$"):
                return _untag_one(key, inner)
        return {key: untag(item) for key, item in value.items()}
    return value


def _untag_one(tag: str, inner: Any) -> Any:
    """The value a one-key ``{"$tag": inner}`` dictionary stands for."""
    if tag == "$dict" and isinstance(inner, dict):
        return {key: untag(item) for key, item in inner.items()}
    if not isinstance(inner, str):
        raise UndecodableMessage(f"Tagged value {tag} holds {type(inner).__name__}, not text.")
    if tag == "$bytes":
        return base64.b64decode(inner, validate=True)
    if tag == "$datetime":
        return datetime.datetime.fromisoformat(inner)
    if tag == "$date":
        return datetime.date.fromisoformat(inner)
    raise UndecodableMessage(f"Unknown tag {tag!r} in stored message data.")


# -- MIME parts -------------------------------------------------------------------


def encode_part(part: email.message.Message) -> dict[str, str]:
    """A MIME part object as its bytes, rendered with its own policy (no ">From" mangling)."""
    modern = isinstance(part, email.message.MIMEPart)
    policy = email.policy.default if modern else email.policy.compat32
    buffer = io.BytesIO()
    try:
        generator = email.generator.BytesGenerator(buffer, mangle_from_=False, policy=policy)
        generator.flatten(part, linesep="\n")
    except Exception as error:
        raise InvalidMessage(f"A MIME part attachment cannot be rendered: {error!r}") from error
    return {
        "mime": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "policy": "default" if modern else "compat32",
    }


class _StoredMIMEBase(MIMEBase):
    """A legacy (compat32) MIME part rebuilt from bytes; still a ``MIMEBase``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        email.message.Message.__init__(self, *args, **kwargs)


# A line break that continues a folded header (RFC 5322 "unfolding" removes it).
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _exact(policy: Any) -> Any:
    """``policy``, parsing a header's value exactly as the generator wrote it.

    The generator writes ``Name: value``; parsers strip every blank after the
    colon, so a value that began with blanks would lose them. This strips
    only the one the generator added.
    """

    class Exact(type(policy)):  # type: ignore[misc]
        def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
            name, value = sourcelines[0].split(":", 1)
            value = value.removeprefix(" ") + "".join(sourcelines[1:])
            return name, value.rstrip("\r\n")

    return Exact()


_PARSING_POLICIES = {
    "default": (email.policy.default, _exact(email.policy.default), email.message.MIMEPart),
    "compat32": (email.policy.compat32, _exact(email.policy.compat32), _StoredMIMEBase),
}


def decode_part(item: dict[str, Any]) -> email.message.Message:
    """Rebuild a MIME part stored by :func:`encode_part`."""
    raw = base64.b64decode(item["mime"], validate=True)
    try:
        policy, parsing, part_class = _PARSING_POLICIES[item.get("policy")]  # type: ignore[index]
    except KeyError:
        raise UndecodableMessage(f"Unknown MIME part policy {item.get('policy')!r}.") from None
    part: email.message.Message = email.parser.BytesParser(
        _class=part_class, policy=parsing
    ).parsebytes(raw)
    for sub in part.walk():
        sub.policy = policy
        reset_headers(sub)
    return part


def reset_headers(part: email.message.Message) -> None:
    """Make parsed headers behave like headers set by a program.

    A parsed header keeps its source text, which the generator writes out
    as it was: folded and encoded for storage, not for the policy the
    message is sent with. The original part's headers were set by a program
    and are folded (and, with SMTPUTF8, left unencoded) by the sending policy;
    resetting them from their values makes ours the same.
    """
    modern = isinstance(part, email.message.MIMEPart)
    items = list(part.items())
    for name in {name.lower() for name, _ in items}:
        del part[name]
    for name, value in items:
        if modern:
            # A value not valid as a new header keeps its parsed form.
            with contextlib.suppress(ValueError):
                _, value = part.policy.header_store_parse(name, str(value))
        elif isinstance(value, str):
            value = _FOLD.sub("", value)
        part.set_raw(name, value)


def normalise_attachment(filename: Any, content: Any, mimetype: Any) -> tuple[Any, Any, Any]:
    """A ``(filename, content, None)`` tuple as ``EmailMessage.attach()`` would store it.

    Django renders a tuple without a MIME type only if ``attach()`` made it
    (it fills in the type); a tuple put in ``attachments`` directly would
    crash at delivery. Either way the type ``attach()`` gives is what the
    caller meant.
    """
    if mimetype is not None or content is None:
        return filename, content, mimetype
    scratch = EmailMessage()
    try:
        scratch.attach(filename, content, None)
    except (TypeError, ValueError) as error:
        raise InvalidMessage(f"Attachment {filename!r} has no MIME type: {error}.") from None
    normal = scratch.attachments[0]
    return normal[0], normal[1], normal[2]

"""Reading django-mailer's stored messages, once, when a database is migrated.

django-mailer stored each message as a base64-encoded pickle. Unpickling
runs code named by the data, so this unpickler resolves only an allowlist:
the classes defined in the standard library's email modules and in
``django.core.mail.message``, ``SafeString``, a few builtins, the classes in
``MAILER_MESSAGE_CLASSES``, and lazy translations (rebuilt only around
Django's translation functions). Any other name becomes an inert
placeholder that keeps the data it was given and runs nothing.

A placeholder where a message keeps its content (subject, body, addresses,
headers, alternatives, attachments) makes the message unreadable: it is
refused, never sent with a stand-in. Elsewhere it is dropped -- the pickled
connection (often django-mailer's ``DbBackend``) is never needed again. A
message whose class was refused is rebuilt as ``EmailMultiAlternatives``
from its attributes.
"""

from __future__ import annotations

import _compat_pickle
import base64
import binascii
import builtins
import contextlib
import copy
import copyreg
import email.headerregistry
import importlib
import io
import pickle
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils import text, translation
from django.utils.functional import Promise, lazy
from django.utils.module_loading import import_string

from mailer.conf import settings
from mailer.exceptions import RefusedLegacyData, UndecodableMessage
from mailer.message import codec

_BUILTINS = frozenset(
    {
        "object",
        "set",
        "frozenset",
        "list",
        "dict",
        "tuple",
        "str",
        "bytes",
        "bytearray",
        "int",
        "float",
        "complex",
        "bool",
    }
)
# Modules whose own classes (those defined there, not imported) may be rebuilt.
_CLASS_MODULES = frozenset(
    {
        "collections",
        "datetime",
        "email.message",
        "email.charset",
        "email.header",
        "email.headerregistry",
        "email._policybase",
        "email.policy",
        "email.mime.base",
        "email.mime.nonmultipart",
        "email.mime.multipart",
        "email.mime.text",
        "email.mime.image",
        "email.mime.audio",
        "email.mime.application",
        "email.mime.message",
        "django.core.mail.message",
        "django.utils.safestring",
    }
)
# What a lazy value may call when it is turned into text.
_LAZY_FUNCTIONS: dict[tuple[str, str], Callable[..., str]] = {
    ("django.utils.translation", "gettext"): translation.gettext,
    ("django.utils.translation", "ngettext"): translation.ngettext,
    ("django.utils.translation", "pgettext"): translation.pgettext,
    ("django.utils.translation", "npgettext"): translation.npgettext,
    # Removed in Django 4.0; pickles made before still name them.
    ("django.utils.translation", "ugettext"): translation.gettext,
    ("django.utils.translation", "ungettext"): translation.ngettext,
    ("django.utils.text", "_format_lazy"): text._format_lazy,  # type: ignore[attr-defined]
    ("builtins", "str"): str,
}
# Attributes that hold what a message says: a refused object in them refuses the message.
_CONTENT = codec.CONTENT_FIELDS


class Placeholder:
    """Stands in for a class or function the allowlist refused; keeps its data, runs nothing."""

    refused = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_placeholder_args"] = (args, kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_placeholder_state"] = state

    def __reduce__(self) -> Any:  # never pickled again
        raise TypeError(f"placeholder for {self.refused}")


def _placeholder(module: str, name: str) -> type[Placeholder]:
    return type(name, (Placeholder,), {"refused": f"{module}.{name}"})


def _lazy(func: Any, args: Any, kwargs: Any, *resultclasses: Any) -> Any:
    """Stands in for Django's ``_lazy_proxy_unpickle``: rebuilds lazy translations only."""
    allowed = func in _LAZY_FUNCTIONS.values() and all(c is str for c in resultclasses)
    values = [*args, *kwargs.values()] if isinstance(kwargs, dict) else [kwargs]
    if not allowed or not all(isinstance(v, str | int | Promise) for v in values):
        name = getattr(func, "refused", None) or getattr(func, "__qualname__", repr(func))
        raise RefusedLegacyData(f"a lazy value calls {name}, which is not allowed")
    return lazy(func, *resultclasses)(*args, **kwargs)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """Stands in for ``_codecs.encode``, with which protocol 2 pickles bytes."""
    if not isinstance(text, str) or encoding not in {"latin1", "latin-1"}:
        raise RefusedLegacyData(f"bytes encoded as {encoding!r}, which is not allowed")
    return text.encode("latin1")


_FUNCTIONS: dict[tuple[str, str], Any] = {
    **_LAZY_FUNCTIONS,
    ("_codecs", "encode"): _latin1,
    ("django.utils.functional", "_lazy_proxy_unpickle"): _lazy,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # type: ignore[attr-defined]
    ("email.headerregistry", "_reconstruct_header"): email.headerregistry._reconstruct_header,  # type: ignore[attr-defined]
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allowlisted names; every other one becomes a :class:`Placeholder`."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 name Python 2's modules (__builtin__.unicode): map them as pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[module, name]
        if module == "builtins" and name in _BUILTINS:
            return getattr(builtins, name)
        if name.isidentifier():
            if f"{module}.{name}" in settings.MESSAGE_CLASSES:
                try:
                    found = import_string(f"{module}.{name}")
                except ImportError:
                    found = None
                if isinstance(found, type) and issubclass(found, EmailMessage):
                    return found
            if module in _CLASS_MODULES:
                found = getattr(importlib.import_module(module), name, None)
                if isinstance(found, type) and found.__module__ == module:
                    return found
        return _placeholder(module, name)


def unpickle(data: str | bytes) -> Any:
    """Load a django-mailer ``message_data`` value with the restricted unpickler.

    Raises RefusedLegacyData when the pickle names a function it may not
    call, UndecodableMessage when the data is not a pickle at all.
    """
    try:
        raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as error:
        raise UndecodableMessage(f"not django-mailer data: {error}") from error
    readings = []
    with contextlib.suppress(binascii.Error):
        readings.append(base64.decodebytes(raw))
    readings.append(raw)  # the oldest versions stored the pickle itself
    errors: list[Exception] = []
    for payload in readings:
        try:
            return RestrictedUnpickler(io.BytesIO(payload)).load()
        except RefusedLegacyData:
            raise
        except Exception as error:
            errors.append(error)
    raise UndecodableMessage(f"not a readable pickle: {errors[0]!r}") from errors[0]


def to_email(obj: Any) -> EmailMessage:
    """The EmailMessage an unpickled object stands for.

    Raises UndecodableMessage if it is none, RefusedLegacyData if its content
    holds a refused object.
    """
    if isinstance(obj, Placeholder):
        state = {k: v for k, v in vars(obj).items() if not k.startswith("_placeholder")}
        if not {"subject", "body", "to"} <= state.keys():
            raise UndecodableMessage(f"the stored data is a {obj.refused}, not an email message")
        message: EmailMessage = EmailMultiAlternatives()
        message.__dict__.update(state)
    elif isinstance(obj, EmailMessage):
        message = obj
    else:
        raise UndecodableMessage(f"the stored data is a {type(obj).__name__}, not an email message")
    attributes = message.__dict__
    for name, value in list(attributes.items()):
        refused = _refused_in(value)
        if name in {"connection", "_connection"} or (refused and name not in _CONTENT):
            del attributes[name]  # the pickled connection and other baggage
        elif refused:
            raise RefusedLegacyData(f"the message's {name} refers to {refused}, not allowed")
    # Content attributes newer than the Django that made the pickle (reply_to: 1.8).
    for name, default in codec._class_defaults(type(message)).items():
        if name in _CONTENT:
            attributes.setdefault(name, copy.copy(default))
    return message


def _refused_in(value: Any, seen: set[int] | None = None) -> str | None:
    """The refused name of the first placeholder inside ``value``, if any."""
    if isinstance(value, Placeholder):
        return value.refused
    if isinstance(value, str | bytes | int | float | Promise) or value is None:
        return None
    seen = set() if seen is None else seen
    if id(value) in seen:
        return None
    seen.add(id(value))
    if isinstance(value, dict):
        items: Any = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        items = getattr(value, "__dict__", {}).values()
    for item in items:
        found = _refused_in(item, seen)
        if found:
            return found
    return None


def convert(data: str, *, assign_message_id: bool = True) -> str:
    """django-mailer's stored text for a message -> ours; UndecodableMessage if unreadable.

    Lazy translations are turned into text in ``LANGUAGE_CODE``, the language
    django-mailer's ``send_mail`` would have sent them in (``migrate`` itself
    runs with translations off).
    """
    try:
        with translation.override(django_settings.LANGUAGE_CODE):
            doc = codec.to_document(to_email(unpickle(data)))
    except UndecodableMessage:
        raise
    except Exception as error:  # whatever the data holds, it is this message's failure
        raise UndecodableMessage(f"the message cannot be converted: {error!r}") from error
    if assign_message_id and settings.ASSIGN_MESSAGE_ID:
        codec.assign_message_id(doc)
    return codec.dumps(doc)


def is_legacy(data: str | None) -> bool:
    """Is ``data`` something other than our JSON format (django-mailer's pickle)?"""
    return bool(data) and not str(data).lstrip().startswith("{")

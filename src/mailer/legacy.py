"""Reading django-mailer's stored messages, once, when a database is migrated.

django-mailer stored each message as a base64-encoded pickle. Unpickling
runs code named by the data, so this unpickler resolves only an allowlist:
Django's and the standard library's email classes, a few builtins, lazy
translation proxies, and the classes in ``MAILER_MESSAGE_CLASSES``. Every
other name becomes an inert placeholder that keeps the data it was given
and runs nothing. A message whose class was replaced by a placeholder is
rebuilt as ``EmailMultiAlternatives`` from its attributes.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.module_loading import import_string

from .conf import settings

_SAFE_BUILTINS = {
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
_SAFE_FUNCTIONS = {
    ("copyreg", "_reconstructor"),
    ("django.utils.functional", "_lazy_proxy_unpickle"),
    ("django.utils.translation", "gettext"),
    ("django.utils.translation", "ngettext"),
    ("django.utils.translation", "pgettext"),
    ("django.utils.translation", "npgettext"),
    ("django.utils.translation", "gettext_lazy"),
    ("django.utils.translation", "ugettext"),
}
_SAFE_CLASS_MODULES = ("email.", "django.core.mail.message", "datetime", "collections")


class Placeholder:
    """Stands in for a class the allowlist refused; keeps its state, runs nothing."""

    refused_class = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __reduce__(self) -> Any:  # never pickled again
        raise TypeError(f"placeholder for {self.refused_class}")


def _placeholder(module: str, name: str) -> type[Placeholder]:
    return type(name, (Placeholder,), {"refused_class": f"{module}.{name}"})


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _SAFE_FUNCTIONS:
            return super().find_class(module, name)
        path = f"{module}.{name}"
        if path in settings.MESSAGE_CLASSES:
            try:
                return import_string(path)
            except ImportError:
                return _placeholder(module, name)
        if module == "datetime" or module.startswith(_SAFE_CLASS_MODULES):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        return _placeholder(module, name)


def unpickle(data: str) -> Any:
    """Load a django-mailer ``message_data`` value with the restricted unpickler."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    try:
        payload = base64.decodebytes(raw)
    except binascii.Error:
        payload = raw  # the oldest versions stored the pickle itself
    try:
        return RestrictedUnpickler(io.BytesIO(payload)).load()
    except Exception:
        if payload is raw:
            raise
        return RestrictedUnpickler(io.BytesIO(raw)).load()


def to_email(obj: Any) -> EmailMessage:
    """The EmailMessage an unpickled object stands for; raise ValueError if none."""
    if isinstance(obj, EmailMessage):
        _drop_placeholders(obj)
        return obj
    if isinstance(obj, Placeholder) and "subject" in vars(obj) and "to" in vars(obj):
        email = EmailMultiAlternatives()
        for key, value in vars(obj).items():
            if key != "args":
                setattr(email, key, value)
        if not hasattr(email, "alternatives"):
            email.alternatives = []
        _drop_placeholders(email)
        return email
    raise ValueError(f"the stored data is a {type(obj).__name__}, not an email message")


def _drop_placeholders(email: EmailMessage) -> None:
    for key, value in list(vars(email).items()):
        if isinstance(value, Placeholder) or key in {"connection", "_connection"}:
            # the pickled connection (often DbBackend itself) is never needed again
            email.__dict__.pop(key, None)
    email.__dict__["_connection"] = None


def convert(data: str) -> str:
    """django-mailer's stored text for a message -> ours. Raises on unreadable data."""
    from . import storage

    email = to_email(unpickle(data))
    doc = storage.to_document(email)
    if settings.ASSIGN_MESSAGE_ID:
        storage.assign_message_id(doc)
    return storage.dumps(doc)


def is_legacy(data: str | None) -> bool:
    """Is ``data`` something other than our JSON format (django-mailer's pickle)?"""
    return bool(data) and not str(data).lstrip().startswith("{")

"""Differences between the Django versions we support, in one place.

Every branch carries the marker ``DJANGO_COMPAT(<x.y)``: dropping support for
a version is a search for that marker.
"""

from __future__ import annotations

import email.policy
import re
from typing import Any

import django
from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend as _SMTPBackend
from django.utils.encoding import force_str

# DJANGO_COMPAT(<6.0): Django 6.0 moved EmailMessage to Python's modern email API.
MODERN_EMAIL = django.VERSION >= (6, 0)
# DJANGO_COMPAT(<6.1): Django 6.1 added the MAILERS setting and backend aliases.
HAS_MAILERS = django.VERSION >= (6, 1)
# DJANGO_COMPAT(<6.0): Django 6.0 added the Tasks framework, django.tasks.
HAS_TASKS = django.VERSION >= (6, 0)


def tasks_framework() -> Any:
    """``django.tasks``; before Django 6.0 the django-tasks backport (ImportError without it)."""
    if HAS_TASKS:
        from django import tasks

        return tasks
    # DJANGO_COMPAT(<6.0): the backport has django.tasks' API under the name django_tasks.
    import django_tasks

    return django_tasks


# DJANGO_COMPAT(<6.1): Django 6.1 added admin actions on the change form.
CHANGE_FORM_ACTIONS = django.VERSION >= (6, 1)


def render(message: EmailMessage, *, utf8: bool = False) -> bytes:
    """The bytes Django's SMTP backend would send for ``message``.

    With ``utf8`` the headers may carry raw UTF-8 (for servers offering SMTPUTF8).
    """
    if MODERN_EMAIL:
        policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        msg = message.message(policy=policy)
        _keep_spaces_between_encoded_words(msg)
        return bytes(msg.as_bytes())
    # DJANGO_COMPAT(<6.0): legacy SafeMIME objects, rendered as Django 5.2's backend does.
    legacy: Any = message.message()
    data = bytes(legacy.as_bytes(linesep="\r\n"))
    if _subject_line_too_long(data):
        # Django 5.2 folds with compat32's Header, which cannot break a word longer
        # than a line: a 1,000-character subject without spaces went out as one
        # line beyond RFC 5322's 998 octets. As Django 6 does, such a subject goes
        # as RFC 2047 encoded words, which fold anywhere.
        from email.header import Header

        subject = Header(force_str(message.subject), "utf-8", header_name="Subject")
        # replace_header, not []=: SafeMIME's __setitem__ would turn the Header back to text.
        legacy.replace_header("Subject", subject)
        data = bytes(legacy.as_bytes(linesep="\r\n"))
    return data


def _subject_line_too_long(data: bytes) -> bool:
    """DJANGO_COMPAT(<6.0): is a line of the top-level Subject over 78 octets?"""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    for index, line in enumerate(head):
        if line.lower().startswith(b"subject:"):
            folded = [line]
            for rest in head[index + 1 :]:
                if not rest[:1].isspace():
                    break
                folded.append(rest)
            return any(len(part) > 78 for part in folded)
    return False


def _keep_spaces_between_encoded_words(msg: Any) -> None:
    """Work around CPython gh-144156 in the text headers (Subject...) of ``msg``.

    When Python's modern email API folds a long non-ASCII header into RFC 2047
    encoded words, it can leave a space *between* two encoded words, where
    every reader ignores it: "Grüße aus Köln" arrives as "Grüße ausKöln".
    (Fixed in CPython in 2026; Python 3.12.1 loses a space in about one in
    five non-ASCII subjects over 100 characters.) Each such header is folded
    and read back; one that does not read back as it was is re-set as plain
    encoded words, which keep every space.
    """
    from email.header import Header
    from email.headerregistry import UnstructuredHeader

    policy = msg.policy
    items = list(msg.items())
    repaired = False
    for index, (name, value) in enumerate(items):
        if not isinstance(value, UnstructuredHeader):
            continue
        folded = policy.fold(name, value)
        if "=?" not in folded:
            continue
        unfolded = "".join(folded.split(":", 1)[1].splitlines()).strip()
        if str(policy.header_factory(name, unfolded)) == str(value).strip():
            continue
        encoded = Header(str(value), "utf-8", header_name=name).encode(linesep="\n")
        items[index] = (name, encoded)
        repaired = True
    if repaired:
        for name in {name.lower() for name, _ in items}:
            del msg[name]
        for name, value in items:
            msg.set_raw(name, value)


def envelope_address(backend: Any, address: str, encoding: str | None, *, utf8: bool) -> str:
    """The SMTP envelope form of ``address`` (addr-spec only, IDNA domain unless ``utf8``).

    Remembered on ``backend`` (a few hundred addresses): parsing an address is
    costly, and the sender is the same for most messages of a run.
    """
    key = (force_str(address), encoding, utf8)
    try:
        cache: dict[tuple[str, str | None, bool], str] = backend.__dict__.setdefault(
            "_mailer_envelope", {}
        )
    except AttributeError:  # no instance dictionary
        return _envelope_address(backend, address, encoding, utf8=utf8)
    found = cache.get(key)
    if found is None:
        found = _envelope_address(backend, address, encoding, utf8=utf8)
        if len(cache) >= 256:
            cache.clear()
        cache[key] = found
    return found


# An ASCII addr-spec, dot-atom on both sides: what both parsers below give back unchanged.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def plain_address(address: str) -> bool:
    """Is ``address`` a bare ASCII ``local@domain`` of dot-atoms (the common case)?"""
    return _PLAIN_ADDRESS.fullmatch(address) is not None


def _envelope_address(backend: Any, address: str, encoding: str | None, *, utf8: bool) -> str:
    if type(address) is str and plain_address(address) and _own_prep_address(backend):
        return address  # nothing to take out, nothing to encode: no parser needed
    return parsed_envelope_address(backend, address, utf8=utf8)


def parsed_envelope_address(backend: Any, address: str, *, utf8: bool) -> str:
    """The envelope form of ``address`` as the backend's (or Django's) parser reads it."""
    if MODERN_EMAIL and hasattr(backend, "prep_address"):
        return str(backend.prep_address(address, force_ascii=not utf8))
    # DJANGO_COMPAT(<6.0): Django 5.2 has no prep_address; use the same parser.
    from email.headerregistry import AddressHeader

    from django.utils.encoding import punycode

    parsed = AddressHeader.value_parser(force_str(address))
    defects = {str(d) for d in parsed.all_defects}
    defects.discard("addr-spec local part with no domain")
    defects.discard("local-part contains non-ASCII characters)")
    mailboxes = parsed.all_mailboxes
    if defects or len(mailboxes) != 1:
        raise ValueError(f"Invalid address {address!r}")
    mailbox = mailboxes[0]
    if not utf8 and not mailbox.local_part.isascii():
        raise ValueError(f"Invalid address {address!r}: non-ASCII local part needs SMTPUTF8")
    domain = mailbox.domain or ""
    if domain and not domain.isascii() and not utf8:
        domain = punycode(domain)
    return f"{mailbox.local_part}@{domain}" if domain else mailbox.local_part


_DJANGO_PREP_ADDRESS = getattr(_SMTPBackend, "prep_address", None)


def _own_prep_address(backend: Any) -> bool:
    """Does ``backend`` turn addresses into envelope addresses as Django's SMTP backend does?"""
    if not MODERN_EMAIL:
        return True  # DJANGO_COMPAT(<6.0): no prep_address: the parser here is used
    method = getattr(type(backend), "prep_address", None)
    return method is None or method is _DJANGO_PREP_ADDRESS


def default_charset(message: EmailMessage) -> str:
    return str(message.encoding or django_settings.DEFAULT_CHARSET)

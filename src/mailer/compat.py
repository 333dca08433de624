"""Differences between the Django versions we support, in one place.

Every branch carries the marker ``DJANGO_COMPAT(<x.y)``: dropping support for
a version is a search for that marker.
"""

from __future__ import annotations

import email.policy
from typing import Any

import django
from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.utils.encoding import force_str

# DJANGO_COMPAT(<6.0): Django 6.0 moved EmailMessage to Python's modern email API.
MODERN_EMAIL = django.VERSION >= (6, 0)
# DJANGO_COMPAT(<6.1): Django 6.1 added the MAILERS setting and backend aliases.
HAS_MAILERS = django.VERSION >= (6, 1)


def render(message: EmailMessage, *, utf8: bool = False) -> bytes:
    """The bytes Django's SMTP backend would send for ``message``.

    With ``utf8`` the headers may carry raw UTF-8 (for servers offering SMTPUTF8).
    """
    if MODERN_EMAIL:
        policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        return bytes(message.message(policy=policy).as_bytes())
    # DJANGO_COMPAT(<6.0): legacy SafeMIME objects, rendered as Django 5.2's backend does.
    legacy: Any = message.message()
    return bytes(legacy.as_bytes(linesep="\r\n"))


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


def _envelope_address(backend: Any, address: str, encoding: str | None, *, utf8: bool) -> str:
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


def default_charset(message: EmailMessage) -> str:
    return str(message.encoding or django_settings.DEFAULT_CHARSET)

"""The bytes to send for a stored message, made without Django's ``EmailMessage``.

Django 6 builds every message with Python's modern email API, whose header
classes parse and refold each header: rendering a plain 800-byte message
that way runs at about 1,100 a second on one core, five times slower than
Django 5.2. This module renders the stored document (see
:mod:`mailer.message.codec`) directly to the bytes Django's SMTP backend would
send -- ``mailer.compat.render(storage.from_document(doc))`` -- for the
messages Django's own classes describe, on every supported Django version:

* the same MIME tree: ``multipart/alternative`` for alternatives,
  ``multipart/mixed`` (or 5.2's ``mixed_subtype``, such as ``related``) for
  attachments, in Django's order, with the same header fields in each part;
* the same charsets and content transfer encodings, chosen by the rules of
  the running Django version (which differ between 5.2 and 6.x);
* header values that read back the same: non-ASCII text and display names
  as RFC 2047 encoded words, IDNA domains, RFC 2231 file names, folded at 78
  octets where the text allows and never beyond 998, Bcc never written;
* every attachment kind storage keeps: bytes, text, ``message/rfc822``
  (a Django message, a Python message or its bytes), MIME parts as stored
  (inline images with their Content-ID among them).

"The same" is checked by ``tests/test_render.py``, which parses both
renderings with the standard library and compares headers, MIME tree and
decoded payloads over generated messages. The Date and Message-ID headers,
when the document has none, are made as Django makes them.

:func:`render` returns None where Django must render the message itself;
the caller then sends ``compat.render(storage.from_document(doc))`` as
before. That is the case for:

* ``utf8=True``, and any address with a non-ASCII local part (only SMTPUTF8
  carries those);
* a class other than Django's two, unless ``MAILER_MESSAGE_CLASSES`` allows
  it and it overrides none of Django's rendering methods;
* anything Django refuses or renders oddly: text the charset cannot encode,
  a charset converted for sending (Shift JIS on 5.2), a header Django writes
  itself (Subject, Bcc, Content-Type...), two Date or Message-ID headers,
  values that look like encoded words, ``mixed_subtype`` on Django 6, a
  ``MIMEPart`` attachment on Django 5.2, ``message/*`` types other than
  ``rfc822``;
* addresses beyond the common forms (comments, groups, quoted local parts,
  display names with runs of blanks): Django's parser reads those;
* a header, stored part or attached message that Django would send with a
  line over 998 octets, or would refold (stored header lines over 78 octets,
  attached messages with parts of their own or folded header lines).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from mailer.compat import MODERN_EMAIL
from mailer.message import document, legacy, modern
from mailer.message.tree import Unsupported, serialise

# What a stored document that is not quite what storage writes may raise while read.
_MALFORMED = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    LookupError,
    RecursionError,
    binascii.Error,
)


def render(doc: Mapping[str, Any], *, utf8: bool = False) -> bytes | None:
    """The bytes Django's SMTP backend would send for the stored document ``doc``.

    ``doc`` is the parsed JSON of a stored message (``storage.to_document``).
    Returns None when Django must render it (see the module's description);
    never raises for a document storage wrote.
    """
    if utf8:
        return None
    try:
        return _render(doc)
    except (Unsupported, *_MALFORMED):
        return None


def unsupported(doc: Mapping[str, Any], *, utf8: bool = False) -> str | None:
    """Why :func:`render` returns None for ``doc``, or None if it renders it."""
    if utf8:
        return "headers with raw UTF-8 (SMTPUTF8) are Django's to write"
    try:
        _render(doc)
    except Unsupported as error:
        return str(error)
    except _MALFORMED as error:
        return f"malformed document: {error!r}"
    return None


def _render(doc: Mapping[str, Any]) -> bytes:
    fields = document.read(doc)
    if MODERN_EMAIL:
        return serialise(modern.message(fields))
    # DJANGO_COMPAT(<6.0): Django 5.2's legacy MIME classes.
    return serialise(legacy.message(fields))

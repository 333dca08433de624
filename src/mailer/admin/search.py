"""What the admin's search box matches in stored mail: the top-level subject and addresses.

Stored data is one JSON document per row (see :mod:`mailer.message.codec`), written
by :func:`mailer.message.codec.dumps` with its keys in a fixed order::

    {"v":1,"class":"...","subject":"...","body":...,"from_email":"...",
     "to":[...],"cc":[...],"bcc":[...],"reply_to":[...],"headers":{...},...}

A search term is looked for with one regular expression anchored at the
start of the document, which walks those keys in that order and matches the
term only inside the subject, the sender, a recipient, a reply-to address or
the ``Message-ID`` header. Everything else -- the body, the alternatives, the
attachments (an attached ``message/rfc822`` has a subject and recipients of
its own), ``attrs`` -- is behind the body permission, and the expression
never reaches it: it stops at the headers. It is escape-aware, so text in a
body that imitates a key (``","to":["...``) is still inside the body's string.

Rows in any other layout (another program's, a corrupt one) are not found by
their content, only by id.
"""

from __future__ import annotations

import json
import re

from django.db.models import Q
from django.utils.text import smart_split, unescape_string_literal

# Inside a JSON string: plain characters and whole escapes (``\"``, ``\\``, ``\n``...).
# Unrolled ("normal* (escape normal*)*") so that the engines repeat a group once per
# escape, not once per character. The same syntax works in PostgreSQL (ARE), MariaDB
# (PCRE2) and SQLite (Python's re, through Django's REGEXP function).
_CHARS = r'[^"\\]*(?:\\.[^"\\]*)*'
_STRING = f'"{_CHARS}"'
_LIST = rf"\[(?:{_STRING}(?:,{_STRING})*)?\]"
# A body is text, or tagged bytes: {"$bytes":"..."}.
_OBJECT_OF_STRINGS = rf"\{{(?:{_STRING}:{_STRING}(?:,{_STRING}:{_STRING})*)?\}}"
_BODY = f"(?:{_STRING}|{_OBJECT_OF_STRINGS})"
# A header value: text, a number, true/false/null, or a tagged value ({"$datetime":"..."}).
_SCALAR = rf"(?:{_STRING}|-?[0-9][0-9.eE+-]*|true|false|null|\{{{_STRING}:{_STRING}\}})"


def stored_data_pattern(term: str) -> str:
    """A regex (to use case-insensitively) finding ``term`` in a top-level subject or address.

    Also in the top-level ``Message-ID`` header, which is shown with the
    headers; never in a body, an attachment or ``attrs``.
    """
    literal = re.escape(json.dumps(term, ensure_ascii=False)[1:-1])
    hit = f'"{_CHARS}{literal}{_CHARS}"'
    in_list = rf"\[(?:{_STRING},)*{hit}"
    headers = rf'\{{(?:{_STRING}:{_SCALAR},)*"message-id":{hit}'
    # From the last address list back to the first: each holds the hit, or is
    # passed over to the next key.
    rest = f'"headers":{headers}'
    for key in ("reply_to", "bcc", "cc", "to"):
        rest = f'"{key}":(?:{in_list}|{_LIST},{rest})'
    after_from = f"(?:{hit}|{_STRING},{rest})"
    after_subject = f'(?:{hit}|{_STRING},"body":{_BODY},"from_email":{after_from})'
    return rf'^\{{"v":1,"class":{_STRING},"subject":{after_subject}'


def is_id(term: str) -> bool:
    """Could ``term`` be a row id (digits that fit a 64-bit integer)?"""
    return term.isascii() and term.isdigit() and len(term) <= 18


def terms(search: str) -> list[str]:
    """The words of a search, quoted phrases kept together ("Django's search syntax")."""
    found = []
    for bit in smart_split(search):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit:
            found.append(bit)
    return found


def stored_data_condition(term: str, field: str = "message_data") -> Q:
    """Rows whose stored data has ``term`` in a top-level subject, address or Message-ID."""
    return Q(**{f"{field}__iregex": stored_data_pattern(term)})

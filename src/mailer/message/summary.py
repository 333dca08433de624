"""Summaries of stored documents for display: subject, recipients and Message-ID.

Read from the JSON without rebuilding the message; whatever the data holds, the
values are strings, so the admin and ``__str__`` can show them without checks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailer.message.codec import FORMAT_VERSION
from mailer.scrub import storable


def document_summary(data: str | None) -> dict[str, Any]:
    """Subject, recipients and Message-ID of stored data, for display; empty if undecodable."""
    if not data:
        return {}
    try:
        return summarize(json.loads(data))
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read or show
        return {}


_SPACE = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()
SUBJECT_KEPT = 1000  # characters of a subject a log row keeps beside the message


def leading_keys(text: str, until: str | None = None) -> dict[str, Any]:
    """The top-level keys of a JSON object, in order, as far as the text goes.

    Stops after the key ``until`` (the rest is not read), or where the text is
    cut short or stops being JSON: the keys before that are returned.
    """
    doc: dict[str, Any] = {}
    index = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[index : index + 1] != "{":
        return doc
    index += 1
    try:
        while True:
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            key, index = _decoder.raw_decode(text, index)
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or text[index : index + 1] != ":":
                return doc
            index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
            value, index = _decoder.raw_decode(text, index)
            doc[key] = value
            if key == until:
                return doc
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text[index : index + 1] != ",":
                return doc
            index += 1
    except (ValueError, RecursionError):
        return doc  # the text ends inside this key or value


def stored_subject(data: str | None) -> str:
    """The subject of stored data, read without decoding the rest ("" if it is not ours).

    The log keeps it beside the message, which a log row may not keep.
    """
    if not data:
        return ""
    return str(summarize(leading_keys(data, "subject")).get("subject", ""))[:SUBJECT_KEPT]


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
    return storable(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _display_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [_display(value)]
    return [_display(item) for item in value]

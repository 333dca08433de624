"""Summaries of stored documents for display: subject, recipients and Message-ID.

Read from the JSON without rebuilding the message; whatever the data holds, the
values are strings, so the admin and ``__str__`` can show them without checks.
"""

from __future__ import annotations

import json
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

"""What is wrong with a stored row, said for the admin instead of failing on it.

A row may hold anything: another program wrote it, someone edited the
table, a bug stored it. The admin shows such a row with a warning ("Stored
data is not valid: ...") for each problem found here -- an unknown status,
``recipient_results`` or ``recipients`` of another shape, JSON too deeply
nested to decode -- and never answers with an error page.

The JSON columns are read as text (see ``listing.json_as_text``) and decoded
here: Django would decode them while loading the row, and a value nested
deeper than the JSON decoder's recursion limit would fail the whole page.
The problems name addresses and types, which a viewer sees anyway, never
stored content.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.core.mail import EmailMultiAlternatives

from mailer.message import codec
from mailer.queue.states import RESULT_CODES, Status

STATUSES = frozenset(Status.values)
RESULTS = frozenset(code for code, _ in RESULT_CODES)
MAX_SHOWN = 80


def stored_json(text: str | None) -> tuple[Any, str]:
    """The value of a JSON column read as ``text``, and what is wrong with the text ("")."""
    if text is None:
        return None, ""
    try:
        return json.loads(text), ""
    except RecursionError:
        return None, "it is nested too deeply to be read"
    except ValueError:
        return None, "it is not JSON"


# What a document read only in part is taken to hold in the keys it does not reach.
_UNREAD = {"subject": "", "body": "", "from_email": "", "headers": {}}
_UNREAD.update({key: [] for key in ("to", "cc", "bcc", "reply_to")})


def document_problem(doc: dict[str, Any]) -> str:
    """What is wrong with the keys a (perhaps partly read) document holds ("" if nothing)."""
    problem = codec._shape_problem({**_UNREAD, **doc})
    return problem or attrs_problem(doc)


def attrs_problem(doc: Any) -> str:
    """What is wrong with a document's ``attrs`` ("" if nothing).

    ``attrs`` only ever adds attributes to a message (an ESP's ``tags``,
    ``metadata``...): one that would replace an attribute or a method every
    message has (``body``, ``to``, ``send``), or reach into the object
    (``__dict__``, ``_connection``), was not written by the queue.
    """
    attrs = doc.get("attrs") if isinstance(doc, dict) else None
    if not isinstance(attrs, dict):
        return ""
    taken = [name for name in attrs if name.startswith("_") or name in _message_attributes()]
    if not taken:
        return ""
    return f"attrs would replace {_shown(taken[0])}{_more(taken)} of the message"


@functools.cache
def _message_attributes() -> frozenset[str]:
    """Names every message has: its class's (methods, properties) and a blank one's fields."""
    # Read without getattr: Django 6.1 warns when a deprecated property is read.
    return frozenset(dir(EmailMultiAlternatives)) | frozenset(vars(EmailMultiAlternatives()))


def queue_row_problems(status: str, results_text: str | None) -> list[str]:
    """What is wrong with a queued row's ``status`` and ``recipient_results``."""
    problems = []
    if status not in STATUSES:
        problems.append(f"status {_shown(status)} is not a state of the queue")
    results = _column(problems, "recipient results", results_text, dict)
    bad = [address for address, result in (results or {}).items() if not _is_result(result)]
    if bad:
        problems.append(
            f"the recipient result for {_shown(bad[0])}{_more(bad)} is not [result, code, reply]"
        )
    return problems


def log_row_problems(result: str, recipients_text: str | None) -> list[str]:
    """What is wrong with a log row's ``result`` and ``recipients``."""
    problems = []
    if result not in RESULTS:
        problems.append(f"result {_shown(result)} is not a known result")
    recipients = _column(problems, "recipients", recipients_text, list)
    if not all(_is_log_entry(entry) for entry in recipients or ()):
        problems.append("an entry of recipients is not [address, result, code, reply]")
    return problems


def _column(problems: list[str], label: str, text: str | None, kind: type) -> Any:
    """The value of a JSON column if it is a ``kind``; else None, and the problem said."""
    value, unreadable = stored_json(text)
    if unreadable:
        problems.append(f"{label}: {unreadable}")
    elif not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        problems.append(f"{label} are {_kind(value)}, not {expected}")
    else:
        return value
    return None


def _is_result(value: Any) -> bool:
    """Is ``value`` a ``recipient_results`` entry: [result, code or null, reply], and
    the provider's message id where one was given?"""
    return isinstance(value, list) and _is_outcome(value)


def _is_log_entry(value: Any) -> bool:
    """Is ``value`` a ``recipients`` entry: [address, result, code or null, reply],
    and the provider's message id where one was given?"""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], str)
        and (_is_outcome(value[1:]))
    )


def _is_outcome(value: list[Any]) -> bool:
    if len(value) == 4 and isinstance(value[3], str):
        value = value[:3]  # the provider's message id
    if len(value) != 3:
        return False
    result, code, reply = value
    code_ok = code is None or (isinstance(code, int) and not isinstance(code, bool))
    return isinstance(result, str) and code_ok and isinstance(reply, str)


def _kind(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", list: "a list", str: "text"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _shown(value: str) -> str:
    return repr(value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…")


def _more(items: list[Any]) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""

"""Reading queued rows as data that may be malformed or huge, never trusting their shape.

A row can hold anything: it may have been written straight to the table, by an
older version, or by someone with access to the database. What the queue reads
from it must never stop a run, and a row far over ``MAILER_MAX_MESSAGE_SIZE``
must not be loaded whole:

* :func:`bounded` makes a claim's ``SELECT`` fetch ``message_data`` only for
  rows whose stored length is within the limit (``LENGTH()`` is computed by
  the database); :func:`take_bounded` leaves the others' ``message_data``
  as ``None``, with their length in ``stored_size``;
* :class:`TolerantJSONField` reads JSON a client cannot parse (nested deeper
  than Python's recursion limit) as its raw text, as Django already does for
  invalid JSON, instead of raising in the middle of a claim;
* :func:`results_problem` says what is wrong with a ``recipient_results``
  value, so the engine fails that message instead of crashing on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.db import models
from django.db.models.functions import Length

from mailer.exceptions import StoredMessageTooLarge
from mailer.queue.outcome import Verdict

__all__ = [
    "TolerantJSONField",
    "bounded",
    "bytes_over",
    "check_loaded_size",
    "results_problem",
    "take_bounded",
    "too_large",
]

Q = TypeVar("Q", bound=models.QuerySet[Any])
_VERDICTS = frozenset(verdict.value for verdict in Verdict)


class TolerantJSONField(models.JSONField):
    """A JSONField that reads what cannot be parsed as its raw text, as Django does for
    invalid JSON: too deep a document must not make every claim raise RecursionError.

    Migrations see a plain ``JSONField``: nothing about the column changes.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        try:
            return super().from_db_value(value, expression, connection)
        except RecursionError:
            return value

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs


def bounded(rows: Q, limit: int | None) -> Q:
    """``rows`` with ``message_data`` fetched only where its length is within ``limit``.

    Adds ``stored_size`` (characters, by the database's ``LENGTH()``) and
    ``bounded_data`` (the text, or NULL); one statement, as before.
    """
    if limit is None:
        return rows
    within = models.Case(
        models.When(stored_size__lte=limit, then=models.F("message_data")),
        default=models.Value(None),
        output_field=models.TextField(),
    )
    return (
        rows.defer("message_data")
        .annotate(stored_size=Length("message_data"))
        .annotate(bounded_data=within)
    )


def take_bounded(rows: Iterable[Any]) -> None:
    """Give rows read through :func:`bounded` their ``message_data`` (``None`` when too large)."""
    for row in rows:
        if "bounded_data" in vars(row):
            row.message_data = row.bounded_data
            del row.bounded_data


def check_loaded_size(data: str, limit: int | None) -> None:
    """Raise StoredMessageTooLarge if loaded ``data`` is over ``limit`` bytes of UTF-8.

    ``LENGTH()`` counts characters; a row of many multi-byte characters may be
    within the limit by that count and over it in bytes (at most four times).
    """
    size = bytes_over(data, limit)
    if size is not None:
        raise StoredMessageTooLarge(
            f"{size} bytes, over MAILER_MAX_MESSAGE_SIZE ({limit}); not decoded"
        )


def bytes_over(data: str, limit: int | None) -> int | None:
    """The size of ``data`` in UTF-8 if it is over ``limit`` bytes, else None (encoding it
    only when its length in characters leaves the question open)."""
    if limit is None or len(data) * 4 <= limit:
        return None
    size = len(data.encode("utf-8", "surrogatepass"))
    return size if size > limit else None


def too_large(stored_size: int, limit: int | None) -> StoredMessageTooLarge:
    """The error for a row whose data was not fetched: ``stored_size`` characters."""
    return StoredMessageTooLarge(
        f"{stored_size} characters, over MAILER_MAX_MESSAGE_SIZE ({limit} bytes); not read"
    )


def results_problem(value: Any) -> str | None:
    """What is wrong with a stored ``recipient_results`` value, or None.

    It must map addresses to ``[verdict, code, text]``, followed by the provider's
    message id where an email service provider gave one.
    """
    if not isinstance(value, dict):
        return f"recipient_results is {_kind(value)}, not an object"
    for address, result in value.items():
        if not (
            isinstance(result, list)
            and (len(result) == 3 or (len(result) == 4 and isinstance(result[3], str)))
            and isinstance(result[0], str)
            and result[0] in _VERDICTS
            and (result[1] is None or (type(result[1]) is int))
            and isinstance(result[2], str)
        ):
            return f"recipient_results[{address[:80]!r}] is not [verdict, code, text]"
    return None


def _kind(value: Any) -> str:
    """The JSON kind of ``value`` (never its text: it may be nested past any limit)."""
    if isinstance(value, str):
        return "text (not JSON this client can read, or a JSON string)"
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "a list" if isinstance(value, list) else type(value).__name__)

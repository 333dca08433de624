"""Message priorities: the contract's constants and the names callers may use."""

from __future__ import annotations

from typing import Any

from mailer.exceptions import InvalidPriority

PRIORITY_HIGH = 1
PRIORITY_MEDIUM = 2
PRIORITY_LOW = 3
PRIORITY_DEFERRED = 4

PRIORITIES = [
    (PRIORITY_HIGH, "high"),
    (PRIORITY_MEDIUM, "medium"),
    (PRIORITY_LOW, "low"),
    (PRIORITY_DEFERRED, "deferred"),
]

PRIORITY_MAPPING = {label: value for value, label in PRIORITIES}


def parse_priority(value: Any, default: int = PRIORITY_MEDIUM) -> int:
    """Turn a constant, its name (``"high"``...) or ``None`` into a priority number.

    ``PRIORITY_DEFERRED`` is accepted: such mail is queued on hold, to be sent
    after ``retry_deferred``, as django-mailer did.
    """
    if value is None:
        return default
    if isinstance(value, str):
        key = value.strip().lower()
        if key in PRIORITY_MAPPING:
            return PRIORITY_MAPPING[key]
        if key.isdigit():
            value = int(key)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4:
        return int(value)
    names = ", ".join(repr(label) for _, label in PRIORITIES)
    raise InvalidPriority(
        f"Invalid priority {value!r}: use mailer.models.PRIORITY_* or one of {names}."
    )

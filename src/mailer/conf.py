"""The one place that reads ``MAILER_*`` settings.

Values are read from ``django.conf.settings`` on every access, so
``override_settings`` works in tests, and validated on the way out: a wrong
type raises :class:`~mailer.exceptions.MailerConfigurationError` naming the
setting. ``mailer.checks`` runs the same validators at start-up.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

from django.conf import settings as django_settings
from django.db import connection

from mailer.compat import HAS_MAILERS
from mailer.exceptions import MailerConfigurationError
from mailer.priorities import parse_priority

T = TypeVar("T")

DEFAULT_DELIVERY_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DEFAULT_ERROR_HANDLER = "mailer.engine.handle_delivery_exception"
QUEUEING_BACKEND = "mailer.backend.DbBackend"


class _Missing:
    pass


MISSING = _Missing()


def _in_range(name: str, value: Any, minimum: float, *, integer: bool, optional: bool) -> Any:
    """``value`` if it is an integer (or, unless ``integer``, a float) >= ``minimum``."""
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not number or value < minimum:
        kind = ("None or " if optional else "") + ("an integer" if integer else "a number")
        raise MailerConfigurationError(f"{name} must be {kind} >= {minimum}, not {value!r}.")
    return value


def _int(minimum: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        return cast(int, _in_range(name, value, minimum, integer=True, optional=False))

    return check


def _optional_int(minimum: int) -> Callable[[str, Any], int | None]:
    def check(name: str, value: Any) -> int | None:
        if value is None:
            return None
        return cast(int, _in_range(name, value, minimum, integer=True, optional=True))

    return check


def _number(minimum: float) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        return float(_in_range(name, value, minimum, integer=False, optional=False))

    return check


def _optional_number(minimum: float) -> Callable[[str, Any], float | None]:
    def check(name: str, value: Any) -> float | None:
        if value is None:
            return None
        return float(_in_range(name, value, minimum, integer=False, optional=True))

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise MailerConfigurationError(f"{name} must be True or False, not {value!r}.")
    return value


def _dotted_path(name: str, value: Any) -> str:
    if not isinstance(value, str) or "." not in value:
        raise MailerConfigurationError(f"{name} must be a dotted import path, not {value!r}.")
    return value


def _optional_dotted_path(name: str, value: Any) -> str | None:
    return None if value is None else _dotted_path(name, value)


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise MailerConfigurationError(f"{name} must be None or a path, not {value!r}.")
    return None if value is None else os.fspath(value)


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise MailerConfigurationError(f"{name} must be a list of strings, not {value!r}.")
    if not all(isinstance(item, str) for item in value):
        raise MailerConfigurationError(f"{name} must contain only strings, not {value!r}.")
    return tuple(value)


def _priority(name: str, value: Any) -> int:
    if value is None:  # parse_priority would read None as "the default"
        raise MailerConfigurationError(f"{name} must be a priority, not None.")
    try:
        return parse_priority(value)
    except ValueError as error:
        raise MailerConfigurationError(f"{name}: {error}") from None


# Tracking events (anymail's normalized names) that may put an address on the don't-send
# list. "deferred" and soft bounces are delays, never a reason to stop writing to someone.
SUPPRESSIBLE_EVENTS = ("bounced", "complained", "unsubscribed", "rejected")
_SMTP_CODE = re.compile(r"(5\d\d)(?:\s+(5\.\d{1,3}\.\d{1,3}))?")


def _events(name: str, value: Any) -> tuple[str, ...]:
    events = _str_list(name, value)
    wrong = [event for event in events if event not in SUPPRESSIBLE_EVENTS]
    if wrong:
        raise MailerConfigurationError(
            f"{name} may name only {', '.join(map(repr, SUPPRESSIBLE_EVENTS))}, not "
            f"{', '.join(map(repr, wrong))} (a delay or a soft bounce never suppresses)."
        )
    return events


SmtpCode = tuple[int, str | None]  # a basic reply code, and an enhanced status code or None


def _smtp_codes(name: str, value: Any) -> tuple[SmtpCode, ...]:
    """``[550, "551", "550 5.1.1"]``: a permanent basic code, optionally with an enhanced one."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise MailerConfigurationError(f"{name} must be a list of SMTP codes, not {value!r}.")
    codes: list[SmtpCode] = []
    for item in value:
        text = str(item) if isinstance(item, int | str) and not isinstance(item, bool) else ""
        found = _SMTP_CODE.fullmatch(text.strip())
        if found is None:
            raise MailerConfigurationError(
                f'{name}: {item!r} is not a permanent SMTP reply code; write 550, "550" '
                'or "550 5.1.1" (a 5xx code, optionally with its 5.x.x enhanced status).'
            )
        codes.append((int(found[1]), found[2]))
    return tuple(codes)


@dataclass(frozen=True)
class Quota:
    """How much one delivery alias may send: per second, and per rolling 24 hours."""

    per_second: float | None = None
    per_day: int | None = None


def _quotas(name: str, value: Any) -> dict[str, Quota]:
    """``{"ses": {"per_second": 14, "per_day": 50000}}``, keyed by delivery alias."""
    if not isinstance(value, dict):
        raise MailerConfigurationError(f"{name} must be a dict of delivery aliases, not {value!r}.")
    quotas: dict[str, Quota] = {}
    for alias, limits in value.items():
        where = f"{name}[{alias!r}]"
        if not isinstance(alias, str) or not alias:
            raise MailerConfigurationError(f"{name}: {alias!r} is not a delivery alias.")
        if not isinstance(limits, dict) or not limits or set(limits) - {"per_second", "per_day"}:
            raise MailerConfigurationError(
                f"{where} must be a dict with 'per_second' and/or 'per_day', not {limits!r}."
            )
        per_second = _optional_number(0.001)(f"{where}['per_second']", limits.get("per_second"))
        per_day = _optional_int(1)(f"{where}['per_day']", limits.get("per_day"))
        quotas[alias] = Quota(per_second, per_day)
    return quotas


class Setting(Generic[T]):
    """A ``MAILER_*`` setting: its default, the validator that types it, and what it is for.

    Declared as a ``MailerSettings`` attribute, whose name it takes with ``MAILER_`` in front.
    """

    name: str

    def __init__(self, default: Any, validate: Callable[[str, Any], T], doc: str) -> None:
        self.default = default
        self.validate = validate
        self.doc = doc

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.name = f"MAILER_{attribute}"

    def __repr__(self) -> str:
        return f"<Setting {self.name}>"

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object | None, owner: type) -> Setting[T] | T:
        if instance is None:
            return self
        return self.validate(self.name, self.raw())

    def raw(self) -> Any:
        return getattr(django_settings, self.name, self.default)

    def is_set(self) -> bool:
        return hasattr(django_settings, self.name)


class MailerSettings:
    """Typed, validated access to every ``MAILER_*`` setting."""

    # -- Contract settings (django-mailer's documented names) ----------------
    EMAIL_BACKEND = Setting(
        DEFAULT_DELIVERY_BACKEND,
        _dotted_path,
        "Backend that really delivers queued mail when MAILERS is not used.",
    )
    EMAIL_MAX_BATCH = Setting(
        None, _optional_int(1), "Stop a send_mail run after this many messages were sent."
    )
    EMAIL_MAX_DEFERRED = Setting(
        None,
        _optional_int(1),
        "Stop a send_mail run after this many messages were deferred or failed.",
    )
    EMAIL_THROTTLE = Setting(0, _number(0), "Seconds to sleep after each message in a run.")
    PAUSE_SEND = Setting(False, _bool, "When True, send_mail and runmailer deliver nothing.")
    EMAIL_MAX_RETRIES = Setting(
        None,
        _optional_int(0),
        "Retries after the first attempt before a message is failed (None: bounded by age).",
    )
    EMAIL_LOG_MESSAGE_DATA = Setting(
        True,
        _bool,
        "Keep the whole message in the log rows of sent and failed mail (False: none of it).",
    )
    LOCK_PATH = Setting(
        None,
        _optional_str,
        "Path of the send_mail lock; '.lock' is appended. None: a file in the temp dir.",
    )
    USE_FILE_LOCK = Setting(True, _bool, "Serialise send_mail runs on this host.")
    LOCK_WAIT_TIMEOUT = Setting(
        -1, _number(-1), "Seconds send_mail waits for the lock; negative: do not wait."
    )
    ERROR_HANDLER = Setting(
        DEFAULT_ERROR_HANDLER,
        _dotted_path,
        "Dotted path of handler(connection, message, exc) -> (connection, action).",
    )
    MESSAGES_BATCH_SIZE = Setting(
        None,
        _optional_int(1),
        "Rows per INSERT when DbBackend queues many messages (None: as many as the DB allows).",
    )
    EMPTY_QUEUE_SLEEP = Setting(
        0.25,
        _number(0.01),
        "Longest wait of runmailer between two looks at an empty queue, in seconds.",
    )

    # -- Our own settings -----------------------------------------------------
    ASSIGN_MESSAGE_ID = Setting(
        True, _bool, "Give every message a Message-ID when it is queued, kept across retries."
    )
    MAX_MESSAGE_SIZE = Setting(
        10_240_000,
        _optional_int(1),
        "Largest stored message in bytes; larger ones are refused at enqueue. None: no limit.",
    )
    MESSAGE_CLASSES = Setting(
        ("anymail.message.AnymailMessage",),
        _str_list,
        "EmailMessage subclasses (besides Django's) that stored messages may be rebuilt as.",
    )
    DEFAULT_PRIORITY = Setting("medium", _priority, "Priority of mail queued without one.")
    CLAIM_BATCH_SIZE = Setting(
        500,
        _int(1),
        "Most messages a worker claims in one transaction (fewer when large or slow to send).",
    )
    LEASE_SECONDS = Setting(
        60,
        _number(1),
        "How long a claim lasts unless renewed; a dead worker's mail waits at most this long.",
    )
    RECORD_TIMEOUT = Setting(
        20,
        _number(1),
        "Seconds send_mail waits for an unreachable database before it gives up (runmailer waits).",
    )
    RETRY_BACKOFF = Setting(
        60, _number(0), "Delay before the first automatic retry, in seconds; doubles each attempt."
    )
    RETRY_BACKOFF_MAX = Setting(
        3600, _number(0), "Longest delay between two automatic retries, in seconds."
    )
    MAX_MESSAGE_AGE = Setting(
        5 * 24 * 3600,
        _optional_number(0),
        "Seconds after queueing after which a failed attempt fails the message. None: no limit.",
    )
    SMTP_TIMEOUT = Setting(
        30,
        _optional_number(0),
        "Socket timeout for delivery connections that set none themselves. None: no timeout.",
    )
    SMTP_PIPELINING = Setting(
        True, _bool, "Send a message's envelope commands together to servers that offer PIPELINING."
    )
    CONCURRENCY = Setting(1, _int(1), "Delivery connections runmailer uses in parallel.")
    SEND_CONCURRENCY = Setting(
        2,
        _int(1),
        "Delivery connections a send_mail run (send_all(), the Tasks drain) shares the due "
        "mail over, when there is enough of it; one with MAILER_EMAIL_THROTTLE.",
    )
    RATE_LIMIT = Setting(
        None,
        _optional_number(0),
        "Messages per second for all workers together, enforced through the database.",
    )
    QUOTAS = Setting(
        {},
        _quotas,
        "Per delivery alias: messages per second and per rolling 24 hours, for all workers.",
    )
    SUPPRESS_EVENTS = Setting(
        ("bounced", "complained", "unsubscribed"),
        _events,
        "Tracking events (anymail's names) that put the recipient on the don't-send list.",
    )
    SUPPRESS_SMTP_CODES = Setting(
        (),
        _smtp_codes,
        "Permanent per-recipient SMTP replies that put the recipient on the don't-send list.",
    )
    POLL_INTERVAL = Setting(
        0.05,
        _number(0.01),
        "Shortest wait of runmailer between polls; it grows up to MAILER_EMPTY_QUEUE_SLEEP.",
    )
    NOTIFY = Setting(True, _bool, "On PostgreSQL, NOTIFY listening workers when mail is queued.")
    ERROR_CLASSIFIERS = Setting(
        (), _str_list, "Dotted paths of functions that classify a delivery exception."
    )
    TASKS_ENQUEUE_ON_COMMIT = Setting(
        False, _bool, "Enqueue the send-queued-mail Django task whenever mail is queued."
    )
    IDEMPOTENCY_WINDOW = Setting(
        7 * 24 * 3600,
        _number(1),
        "Seconds during which a message with an idempotency key already used is not queued.",
    )
    WORKERS = Setting(
        1, _int(1), "How many worker processes the deployment runs (used by system checks)."
    )

    @classmethod
    def all_settings(cls) -> list[Setting[Any]]:
        return [value for value in vars(cls).values() if isinstance(value, Setting)]

    # -- Derived values ---------------------------------------------------------

    @property
    def lock_file(self) -> str:
        """Absolute path of the send_mail lock file (MAILER_LOCK_PATH + '.lock').

        Without MAILER_LOCK_PATH: a file named after the database in
        :func:`default_lock_directory`.
        """
        base = self.LOCK_PATH
        if base is None:
            # One lock per database: two projects on a host must not block each other.
            db = f"{connection.vendor}:{connection.settings_dict.get('NAME')}"
            digest = hashlib.sha1(db.encode(), usedforsecurity=False).hexdigest()[:12]
            base = os.path.join(default_lock_directory(), f"django-mailer-{digest}")
        return os.path.abspath(base + ".lock")


def default_lock_directory() -> str:
    """The running user's own directory (mode 0700) for the send_mail lock, in the temp dir.

    Never the temp directory itself: anyone may create names there, such as a
    symbolic link where the lock is about to be opened.
    """
    return os.path.join(tempfile.gettempdir(), f"django-mailer-{os.geteuid()}")


settings = MailerSettings()


def mailers_configured() -> bool:
    """True when the project uses Django 6.1's MAILERS setting.

    Older Django versions ignore a MAILERS setting, and so do we there
    (``mailer.checks`` warns about it: mailer.W004).
    """
    # DJANGO_COMPAT(<6.1): MAILERS exists from Django 6.1 on.
    return HAS_MAILERS and mailers_defined()


def mailers_defined() -> bool:
    """Is a MAILERS setting present at all (whether or not this Django uses it)?"""
    return hasattr(django_settings, "MAILERS")


def mailers_setting() -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], getattr(django_settings, "MAILERS", {}))

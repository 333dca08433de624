"""Every exception the mailer raises.

All derive from :class:`MailerError`, and each also derives from the type a
Django developer would naturally catch (``ValueError`` for bad input,
``ImproperlyConfigured`` for bad settings), so existing ``except`` clauses
keep working.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError


class MailerError(Exception):
    """Base class of all mailer exceptions."""


# -- Enqueue time: the caller gave us something we cannot queue --------------


class InvalidMessage(MailerError, ValueError):
    """The message cannot be queued as given; nothing was written."""


class InvalidHeader(InvalidMessage):
    """A header (subject included) contains a line break or is malformed."""


class InvalidContentType(InvalidHeader):
    """A MIME type, subtype or charset is malformed or holds a control character or line break."""


class InvalidAddress(InvalidMessage):
    """An address is missing, malformed, or contains a line break."""


class InvalidRecipientList(InvalidMessage, TypeError):
    """A recipient list is a plain string (or another non-list) instead of a list."""


class NotAnEmailMessage(InvalidMessage, TypeError):
    """Something other than an ``EmailMessage`` was given where a message is stored."""


class MessageTooLarge(InvalidMessage):
    """The stored message would exceed ``MAILER_MAX_MESSAGE_SIZE``."""


class InvalidSchedule(InvalidMessage, TypeError):
    """``send_at``/``expires_at`` is not a datetime, or the message would expire unsent."""


class InvalidIdempotencyKey(InvalidMessage):
    """An idempotency key that is not a str of 1 to 255 characters without control characters."""


class InvalidPriority(MailerError, ValueError):
    """A priority that is neither a ``PRIORITY_*`` constant nor one of their names."""


# -- Storage: data that cannot be turned back into an email ------------------


class UndecodableMessage(MailerError, ValueError):
    """Stored message data is corrupt, of an unknown format version, or not ours."""


class RefusedLegacyData(UndecodableMessage):
    """A django-mailer pickle names something the restricted unpickler does not allow."""


class StoredMessageTooLarge(UndecodableMessage):
    """A queued row is over ``MAILER_MAX_MESSAGE_SIZE``: it is failed without being read."""


# -- Delivery: the database went away ----------------------------------------


class DatabaseUnreachable(MailerError, DatabaseError):
    """A run gave up: the database did not answer for ``MAILER_RECORD_TIMEOUT`` seconds.

    ``unrecorded`` lists ``(id, Message-ID)`` of the messages a server accepted
    whose results could not be written: they will be sent again.
    """

    def __init__(self, error: str, unrecorded: list[tuple[int, str]]) -> None:
        self.error = error
        self.unrecorded = unrecorded
        count = len(unrecorded)
        super().__init__(
            f"the database is unreachable ({error}): {count} accepted "
            f"message{'' if count == 1 else 's'} could not be recorded"
            + (" and may be sent again (ids and Message-IDs in the log)" if count else "")
        )

    @classmethod
    def of_all(cls, raised: list[DatabaseUnreachable]) -> DatabaseUnreachable:
        """One error for a run whose connections all gave up: each message named once."""
        unrecorded = list(dict.fromkeys(item for error in raised for item in error.unrecorded))
        return cls(raised[0].error, unrecorded)


class TablesMissing(MailerError, DatabaseError):
    """mailer's tables are missing or older than its models: ``manage.py migrate`` was not run.

    Raised instead of the database's own "no such table" (or "no such column")
    error, which it keeps as ``__cause__``; a ``DatabaseError``, as that was.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"mailer's database tables are missing or out of date ({detail}): "
            "run `python manage.py migrate`"
        )

    @classmethod
    def from_error(cls, error: BaseException) -> TablesMissing | None:
        """The TablesMissing that ``error`` means, or None if it means something else.

        Reads the driver's own error code (PostgreSQL's SQLSTATE, MySQL's error
        number) or SQLite's message, so it works inside a failed transaction too,
        where no query may be run to look at the schema.
        """
        if isinstance(error, TablesMissing):
            return error
        if not isinstance(error, DatabaseError):
            return None
        cause = error.__cause__ or error
        text = " ".join(str(error).split())
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if code is not None:  # PostgreSQL: undefined_table, undefined_column
            missing = code in _POSTGRES_MISSING
        elif cause.args and isinstance(cause.args[0], int):  # MySQL and MariaDB
            missing = cause.args[0] in _MYSQL_MISSING
        else:  # SQLite says it in words
            missing = text.startswith(_SQLITE_MISSING) or " has no column named " in text
        if not missing or ("mailer_" not in text and "column" not in text.lower()):
            return None
        return cls(text)


_POSTGRES_MISSING = ("42P01", "42703")
_MYSQL_MISSING = (1146, 1054)  # ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR
_SQLITE_MISSING = ("no such table:", "no such column:")


# -- Configuration -----------------------------------------------------------


class MailerConfigurationError(MailerError, ImproperlyConfigured):
    """A setting the mailer reads (``MAILER_*``, ``MAILERS``, ``ADMINS``...) is wrong."""


class DeliveryBackendLoop(MailerConfigurationError):
    """The backend that should deliver queued mail is the queueing backend itself."""


# -- The send_mail lock --------------------------------------------------------


class LockHeld(MailerError):
    """Another send_mail run of this user holds the lock: this run has nothing to do."""


class LockHeldByOtherUser(MailerError, PermissionError):
    """A process of another user holds the send_mail lock: no mail is sent while it does."""


class UnsafeLockPath(MailerConfigurationError, PermissionError):
    """The lock file or its directory could be replaced or held by another user.

    Its owner is someone else, it is writable by group or others, or it is a
    symbolic link (or has other hard links): nothing is opened through it.
    """


# -- Worker processes ------------------------------------------------------------


class WorkerProcessFailed(MailerError, RuntimeError):
    """A worker process of ``runmailer`` died or failed: its siblings were stopped."""


# -- Warnings ----------------------------------------------------------------


class MailerWarning(UserWarning):
    """Something about a queued message could not be kept exactly as given."""

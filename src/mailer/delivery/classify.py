"""Deciding what a reply or an exception means for a message: sent, retry, or give up.

* 2xx: sent. 4xx, timeouts, dropped connections, DNS and connection errors:
  transient, retried with backoff. 5xx: permanent, failed at once.
* Bad stored data (``ValueError``, ``UnicodeError``...): permanent; a row the
  queue cannot read (``UndecodableMessage``) says "stored data is not valid: ...",
  one over ``MAILER_MAX_MESSAGE_SIZE`` "stored data is too large: ...".
* django-anymail's exceptions are read by ``mailer.esp``, before anything
  generic (its HTTP errors are also ``OSError`` too): the HTTP status where the
  SMTP code goes, the provider's words where the text goes, per recipient.
* Other ESP libraries are read through their exceptions: an HTTP status on the
  exception or its ``response`` counts (408, 425, 429 and 5xx are transient).
* Anything else is transient: retried until ``MAILER_EMAIL_MAX_RETRIES`` or
  ``MAILER_MAX_MESSAGE_AGE`` runs out.

Teach it a new backend's errors with ``MAILER_ERROR_CLASSIFIERS``: dotted
paths of functions ``classify(exc) -> Verdict | (Verdict, Reply) | None``,
asked first; ``None`` means "not mine".
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

from django.utils.module_loading import import_string

from mailer.conf import settings
from mailer.delivery.esp import classify_anymail, is_anymail_error, verdict_for_http
from mailer.exceptions import StoredMessageTooLarge, UndecodableMessage
from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict


def verdict_for_code(code: int | None) -> Verdict:
    if code is None:
        return Verdict.TRANSIENT
    if 200 <= code < 300:
        return Verdict.SENT
    if 500 <= code < 600:
        return Verdict.PERMANENT
    return Verdict.TRANSIENT


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def exception_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# Exceptions that mean the connection, not this message, is at fault: the
# message is retried, whatever code came with them.
_CONNECTION_ERRORS = (
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
    smtplib.SMTPAuthenticationError,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    socket.gaierror,
    ssl.SSLError,
)


def breaks_connection(exc: BaseException) -> bool:
    """After ``exc`` the delivery connection must be closed and opened again."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421 or isinstance(exc, _CONNECTION_ERRORS)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return False
    if is_anymail_error(exc) and getattr(exc, "status_code", None) is not None:
        return False  # the API answered: its HTTP session is fine
    return isinstance(exc, OSError)  # socket errors, timeouts, and smtplib's own


def classify(exc: BaseException, recipients: list[str] | None = None) -> Outcome:
    """The outcome of an attempt that raised ``exc``, for ``recipients``."""
    recipients = recipients or []
    name = exception_name(exc)
    custom = _custom(exc)
    provider = None if custom is not None else classify_anymail(exc, recipients)
    if provider is not None:
        return provider
    if custom is not None:
        verdict, reply = custom
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        results = [
            RecipientResult(
                str(addr), verdict_for_code(code), Reply(code, _text(text)), refused=True
            )
            for addr, (code, text) in exc.recipients.items()
        ]
        worst = (
            Verdict.TRANSIENT
            if any(r.verdict is Verdict.TRANSIENT for r in results)
            else Verdict.PERMANENT
        )
        first = results[0].reply if results else Reply(None, str(exc))
        return Outcome(worst, first, name, results)
    elif isinstance(exc, _CONNECTION_ERRORS):
        code = getattr(exc, "smtp_code", None)
        verdict, reply = (
            Verdict.TRANSIENT,
            Reply(code, _text(getattr(exc, "smtp_error", exc)) or name),
        )
    elif isinstance(exc, smtplib.SMTPResponseException):
        verdict = verdict_for_code(exc.smtp_code)
        if verdict is Verdict.SENT:  # an exception with a 2xx code is still not a delivery
            verdict = Verdict.TRANSIENT
        reply = Reply(exc.smtp_code, _text(exc.smtp_error))
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        verdict, reply = Verdict.PERMANENT, Reply(None, str(exc) or name)
    elif isinstance(exc, StoredMessageTooLarge):
        verdict, reply = Verdict.PERMANENT, Reply(None, f"stored data is too large: {exc}")
    elif isinstance(exc, UndecodableMessage):
        verdict, reply = Verdict.PERMANENT, Reply(None, f"stored data is not valid: {exc}")
    elif isinstance(exc, ValueError | TypeError | UnicodeError | LookupError):
        verdict, reply = Verdict.PERMANENT, Reply(None, f"{name}: {exc}")
    elif isinstance(exc, OSError):
        verdict, reply = Verdict.TRANSIENT, Reply(None, f"{name}: {exc}")
    else:
        verdict, reply = _esp(exc)
    return Outcome(
        verdict,
        reply,
        name,
        [RecipientResult(address, verdict, reply) for address in recipients],
    )


def _custom(exc: BaseException) -> tuple[Verdict, Reply] | None:
    for path in settings.ERROR_CLASSIFIERS:
        result = import_string(path)(exc)
        if result is None:
            continue
        if isinstance(result, Verdict):
            return result, Reply(getattr(exc, "smtp_code", None), str(exc) or exception_name(exc))
        verdict, reply = result
        return verdict, reply
    return None


def _http_status(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _esp(exc: BaseException) -> tuple[Verdict, Reply]:
    """Errors of other HTTP-API backends, read without importing them (django-anymail's
    are read by ``mailer.esp``)."""
    text = str(exc) or exception_name(exc)
    status = _http_status(exc)
    if status is not None:
        return verdict_for_http(status), Reply(status, text)
    # Unknown errors, configuration errors included, are retried: fix the cause and the mail goes.
    return Verdict.TRANSIENT, Reply(None, text)

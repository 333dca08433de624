"""Error handlers (``MAILER_ERROR_HANDLER``): the default one, and what handlers written
for django-mailer are given.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailer.delivery.classify import breaks_connection, classify, exception_name
from mailer.exceptions import UndecodableMessage
from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict
from mailer.scrub import scrubbed_logger

if TYPE_CHECKING:
    from mailer.delivery.transport import Transport
    from mailer.queue.message import Message

logger = scrubbed_logger("mailer.engine")  # the engine's log: tracebacks may quote secrets


def handle_delivery_exception(
    connection: Any, message: Message, exc: BaseException
) -> tuple[Any, str]:
    """The default ``MAILER_ERROR_HANDLER``: classify ``exc``; write nothing.

    Returns the connection to keep using (None after a broken connection, so
    a new one is opened) and ``"deferred"`` (try again later) or ``"failed"``.
    The engine records the attempt.
    """
    outcome = classify(exc)
    message._mailer_outcome = outcome  # type: ignore[attr-defined]
    action = "deferred" if outcome.verdict is Verdict.TRANSIENT else "failed"
    return (None if breaks_connection(exc) else connection), action


# The name django-mailer's documentation uses for the default handler.
handle_backend_exception = handle_delivery_exception


def as_exception(outcome: Outcome, sender: str) -> BaseException:
    """The smtplib exception Django's backend would have raised for ``outcome``.

    Error handlers written for django-mailer expect these.
    """
    code, text = outcome.reply.code or 0, outcome.reply.text.encode()
    if outcome.stage == "mail":
        return smtplib.SMTPSenderRefused(code, text, sender)
    if outcome.stage == "rcpt":
        refused = {
            r.address: (r.reply.code or 0, r.reply.text.encode())
            for r in outcome.recipients
            if r.verdict in (Verdict.TRANSIENT, Verdict.PERMANENT)
        }
        return smtplib.SMTPRecipientsRefused(refused)
    return smtplib.SMTPDataError(code, text)


def ask_handler(
    handler: Callable[..., tuple[Any, str]],
    path: str,
    transport: Transport,
    message: Message,
    error: BaseException,
    recipients: list[str],
    outcome: Outcome | None = None,
) -> Outcome:
    """Ask ``MAILER_ERROR_HANDLER`` (``handler``, imported from ``path``) about ``error``
    met delivering ``message`` over ``transport``; never let it stop the run."""
    try:
        connection, action = handler(transport.backend, message, error)
    except Exception as handler_error:
        logger.exception("MAILER_ERROR_HANDLER %s raised", path)
        transport.close()
        return handler_raised(error, handler_error, recipients, outcome)
    transport.replace(connection)
    return handler_said(action, message, error, recipients, outcome)


def handler_raised(
    error: BaseException,
    handler_error: Exception,
    recipients: list[str],
    outcome: Outcome | None,
) -> Outcome:
    """The outcome when the error handler itself raised: retried, unless the error is
    a refusal or bad data, and the reply says what the handler did."""
    found = outcome or classify(error, recipients)
    if found.verdict is Verdict.PERMANENT and not isinstance(
        error, smtplib.SMTPException | ValueError
    ):
        found.verdict = Verdict.TRANSIENT
    found.reply = Reply(
        found.reply.code, f"{found.reply.text} (error handler raised {handler_error!r})"
    )
    return found


def handler_said(
    action: str,
    message: Message,
    error: BaseException,
    recipients: list[str],
    outcome: Outcome | None,
) -> Outcome:
    """The outcome the error handler's ``action`` ("sent", "failed", or retry) makes of
    ``error``: the default handler's own classification when it left one on ``message``."""
    found = getattr(message, "_mailer_outcome", None) or outcome or classify(error, recipients)
    if not found.recipients:
        found.recipients = [RecipientResult(a, found.verdict, found.reply) for a in recipients]
    if action == "sent":
        found.verdict = Verdict.SENT
    elif action == "failed":
        found.verdict = Verdict.PERMANENT
    elif found.verdict is not Verdict.TRANSIENT:
        found.verdict = Verdict.TRANSIENT  # the handler chose to retry
    return found


def undecodable(error: Exception) -> Outcome:
    """The outcome of a row that cannot be read or rebuilt: failed for good, no handler
    asked (whatever a row holds, it fails alone)."""
    if not isinstance(error, UndecodableMessage):
        error = UndecodableMessage(f"{exception_name(error)}: {error}")
    outcome = classify(error)
    outcome.verdict = Verdict.PERMANENT
    return outcome

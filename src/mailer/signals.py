"""Signals about queued mail, sent after the transaction that wrote the change commits.

Every signal is sent with ``sender`` the ``Message`` model and ``using``, the
database alias the change was written to. None is sent if that transaction
rolls back, and each is sent once the outermost transaction on ``using``
commits (at once in autocommit mode).

``message_queued(sender, message, using)``
    A message was queued. ``message`` is the new row (its ``pk`` is set,
    except on MySQL, where bulk inserts return no ids). Sent once per message;
    mail left with no recipient by the don't-send list is not queued and not
    signalled.

``batch_queued(sender, messages, using)``
    The same, once per call that queued mail (``send_mass_mail`` queues many
    messages in one call), with the list of rows: for receivers that would
    rather not run once per message.

``message_sent(sender, message, outcome, log, using)``
    The server accepted the message for every recipient it still had to
    reach. Some may have been refused for good: ``outcome.refused`` lists
    them, each with its own ``reply`` (``outcome.delivered`` the others), and
    ``log.refused`` counts them. The row is deleted from the queue;
    ``message`` is the instance as it was, ``pk`` included.

``message_deferred(sender, message, outcome, log, using)``
    The attempt failed for now; ``message.due_at`` is the next attempt and
    ``message.last_code``/``last_reply`` the server's reply.

``message_failed(sender, message, outcome, log, using)``
    The message will not be sent: a permanent refusal, undecodable data, an
    expired message, or retries or age used up. The row stays in the queue,
    failed, with the reply.

``outcome`` is the :class:`mailer.outcome.Outcome` of the attempt (verdict,
``reply.code`` and ``reply.text``, result per recipient, ``message_id``);
``log`` is the ``MessageLog`` row written for it, or None when a
``MAILER_ERROR_HANDLER`` wrote its own. A message whose every remaining
recipient is on the don't-send list leaves the queue with a "don't send" log
row and none of these signals.

Receivers run in the process that queued or delivered the mail, after the
commit, so they cannot undo it. They are called with ``send_robust``: a
receiver that raises is logged (``django.dispatch`` logs the traceback,
``mailer.signals`` which signal and message) and neither the other receivers,
nor the caller, nor delivery are affected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.dispatch import Signal

if TYPE_CHECKING:
    from mailer.queue.log import MessageLog
    from mailer.queue.message import Message
    from mailer.queue.outcome import Outcome

logger = logging.getLogger("mailer.signals")

message_queued = Signal()
batch_queued = Signal()
message_sent = Signal()
message_deferred = Signal()
message_failed = Signal()

_RESULT_SIGNALS = {"sent": message_sent, "deferred": message_deferred, "failed": message_failed}
_NAMES = {
    message_queued: "message_queued",
    batch_queued: "batch_queued",
    message_sent: "message_sent",
    message_deferred: "message_deferred",
    message_failed: "message_failed",
}


def queued_on_commit(sender: type[Message], messages: Sequence[Message], using: str) -> None:
    """Send ``message_queued`` for each of ``messages`` and ``batch_queued`` once, on commit.

    One ``on_commit`` callback for the whole call, and none if no receiver
    listens.
    """
    if not messages or not (
        message_queued.has_listeners(sender) or batch_queued.has_listeners(sender)
    ):
        return
    rows = list(messages)

    def send() -> None:
        if message_queued.has_listeners(sender):
            for message in rows:
                _send(message_queued, sender, message=message, using=using)
        _send(batch_queued, sender, messages=rows, using=using)

    transaction.on_commit(send, using=using, robust=True)


def recorded_on_commit(
    sender: type[Message],
    results: Sequence[tuple[str, Message, Outcome, MessageLog | None]],
    using: str,
) -> None:
    """Send ``message_sent``, ``message_deferred`` or ``message_failed`` for each result, on commit.

    ``results`` holds ``(final state, message, outcome, log row)``; the final
    state is "sent", "deferred" or "failed" (others, such as "skipped", are
    not signalled).
    """
    wanted = [
        (_RESULT_SIGNALS[state], message, outcome, log)
        for state, message, outcome, log in results
        if state in _RESULT_SIGNALS and _RESULT_SIGNALS[state].has_listeners(sender)
    ]
    if not wanted:
        return

    def send() -> None:
        for signal, message, outcome, log in wanted:
            _send(signal, sender, message=message, outcome=outcome, log=log, using=using)

    transaction.on_commit(send, using=using, robust=True)


def result_listeners(sender: type[Message]) -> bool:
    """Does any receiver listen for results (so that recording makes the log rows it is sent)?"""
    return any(signal.has_listeners(sender) for signal in _RESULT_SIGNALS.values())


def _send(signal: Signal, sender: type[Message], **named: Any) -> None:
    for receiver, response in signal.send_robust(sender, **named):
        if isinstance(response, Exception):
            message = named.get("message")
            logger.warning(
                "%s receiver %s raised %r%s; ignored",
                _NAMES[signal],
                getattr(receiver, "__qualname__", receiver),
                response,
                f" for message {message.pk}" if message is not None else "",
            )


__all__ = [
    "batch_queued",
    "message_deferred",
    "message_failed",
    "message_queued",
    "message_sent",
]

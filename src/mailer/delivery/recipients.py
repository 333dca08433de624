"""Who an attempt is for: recipients not yet accepted, less those on the don't-send list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailer.exceptions import UndecodableMessage
from mailer.message.letter import Letter
from mailer.message.summary import document_summary
from mailer.message.validation import address_key
from mailer.queue.dontsend import DontSendEntry
from mailer.queue.outcome import RecipientResult, Reply, Verdict
from mailer.queue.rows import results_problem

if TYPE_CHECKING:
    from mailer.queue.message import Message


def pending_recipients(
    letter: Letter, done: Any, blocked: set[str]
) -> tuple[list[str], list[RecipientResult]]:
    """Recipients still to send to (each once), and those skipped by the don't-send list.

    ``done`` is the row's ``recipient_results``; UndecodableMessage if it is malformed.
    """
    problem = results_problem(done)
    if problem:
        raise UndecodableMessage(problem)
    seen: set[str] = {address_key(a) for a in done}
    pending: list[str] = []
    skipped: list[RecipientResult] = []
    for address in letter.recipients():
        key = address_key(address)
        if key in seen:
            continue
        seen.add(key)
        if key in blocked:
            skipped.append(
                RecipientResult(address, Verdict.SKIPPED, Reply(None, "on the don't-send list"))
            )
        else:
            pending.append(address)
    return pending, skipped


def blocked_recipients(batch: list[Message], using: str) -> set[str]:
    """Recipients of ``batch`` on the don't-send list: one query.

    Reads only the addresses of each row's summary; a row too large to have been read,
    or whose data is not a message, adds none (and is failed when its turn comes).
    """
    addresses: list[str] = []
    for message in batch:
        if message.message_data is None:
            continue
        summary = document_summary(message.message_data)
        for field in ("to", "cc", "bcc"):
            addresses.extend(summary.get(field, ()))
    return DontSendEntry.objects.using(using).blocked(addresses)


def dont_send_active(using: str) -> bool:
    """Has the don't-send list any entry in force? (If not, no batch need be checked.)"""
    return DontSendEntry.objects.using(using).active().exists()

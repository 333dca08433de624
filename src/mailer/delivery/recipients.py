"""Who an attempt is for: recipients not yet accepted, less those on the don't-send list."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMessage

from mailer.exceptions import UndecodableMessage
from mailer.message.validation import address_key
from mailer.queue.outcome import RecipientResult, Reply, Verdict
from mailer.queue.rows import results_problem


def pending_recipients(
    email: EmailMessage, done: Any, blocked: set[str]
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
    for address in email.recipients():
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

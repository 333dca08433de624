"""Permanent SMTP replies put addresses on the don't-send list (``MAILER_SUPPRESS_SMTP_CODES``).

For sites without a provider's webhooks: a recipient refused for good with a listed
reply -- ``550``, or ``550 5.1.1`` to require that enhanced status as well -- is
suppressed as a hard bounce ("bounced", reported by "SMTP"), with the reply as its
description, once the attempt's result is committed.
"""

from __future__ import annotations

import re
from typing import Any

from mailer.conf import SmtpCode, settings
from mailer.queue.dontsend import DontSendEntry, DontSendReason
from mailer.queue.outcome import Outcome, Reply, Verdict

_ENHANCED = re.compile(r"^\s*(\d\.\d{1,3}\.\d{1,3})\b")
REPORTER = "SMTP"


def matches(reply: Reply, codes: tuple[SmtpCode, ...]) -> bool:
    """Is ``reply`` one of ``codes`` (a basic code, and the enhanced status if one is given)?"""
    found = _ENHANCED.match(reply.text)
    enhanced = found[1] if found else None
    return any(
        reply.code == basic and (wanted is None or wanted == enhanced) for basic, wanted in codes
    )


def on_result(
    sender: Any, message: Any, outcome: Outcome, using: str = "default", **kwargs: Any
) -> None:
    """``message_sent``/``deferred``/``failed`` receiver: suppress recipients refused for good."""
    codes = settings.SUPPRESS_SMTP_CODES
    if not codes:
        return
    for result in outcome.recipients:
        if result.verdict is Verdict.PERMANENT and matches(result.reply, codes):
            DontSendEntry.objects.using(using).suppress(
                result.address,
                DontSendReason.BOUNCED,
                esp_name=REPORTER,
                description=str(result.reply),
                queue_id=message.pk,
                message_id=outcome.message_id or message.stored_message_id or "",
            )

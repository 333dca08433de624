"""What anymail made of a provider's answer, per recipient, and the sample recipients."""

from __future__ import annotations

from typing import Any

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAN = "dan@example.com"


def statuses(message: Any) -> dict[str, str]:
    """Each recipient's anymail status ("sent", "queued", "rejected", "invalid"...)."""
    return {address: status.status for address, status in message.anymail_status.recipients.items()}


def message_ids(message: Any) -> dict[str, str | None]:
    """Each recipient's provider message id (None where the provider gave none)."""
    return {
        address: status.message_id for address, status in message.anymail_status.recipients.items()
    }

"""Which message a provider's message id is about: the log row of the attempt the
provider gave that id (``MessageLog.objects.by_provider_id``), and through it the
queued message."""

from __future__ import annotations

from typing import NamedTuple

from mailer.queue.log import MessageLog


class MessageRef(NamedTuple):
    """A queued message as the don't-send list remembers it."""

    queue_id: int | None  # the Message row's id, kept by its log rows as queue_id
    message_id: str  # the Message-ID header


def message_for(provider_message_id: str, using: str = "default") -> MessageRef | None:
    """The message the provider calls ``provider_message_id``, or None (not sent by this
    queue, or its log rows purged)."""
    if not provider_message_id:
        return None
    logs = MessageLog.objects.using(using).by_provider_id(provider_message_id)
    found = logs.order_by("-when_attempted", "-pk").values_list("queue_id", "message_id").first()
    if found is None:
        return None
    return MessageRef(found[0], found[1] or "")

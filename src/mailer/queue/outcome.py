"""What one delivery attempt came to: plain data shared by the engine and the queue.

The delivery side produces an :class:`Outcome` per attempted message; the
queue (``Message.objects.record``) turns a batch of them into state changes
and log rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mailer.scrub import scrub, storable


class Verdict(enum.Enum):
    """How a reply or an exception is to be treated."""

    SENT = "sent"
    TRANSIENT = "transient"  # 4xx, timeouts, dropped connections: try again later
    PERMANENT = "permanent"  # 5xx and bad data: never try again
    SKIPPED = "skipped"  # on the don't-send list


@dataclass(frozen=True)
class Reply:
    """A server's (or backend's) answer: SMTP code when there is one, and text.

    Every reply is made here, so its text is scrubbed here (``mailer.scrub``):
    credentials in it are never stored, logged or signalled; and what a
    malformed row put in it (NUL, lone surrogates) is escaped, so it can be stored.
    """

    code: int | None
    text: str

    def __post_init__(self) -> None:
        if isinstance(self.text, str):
            object.__setattr__(self, "text", storable(scrub(self.text)))

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


@dataclass
class RecipientResult:
    """One recipient's result in an attempt.

    ``refused``: the server (or provider) answered for this recipient alone and did
    not take it (an SMTP RCPT refusal, a provider's "rejected" or "invalid"), as
    opposed to a failure of the whole attempt. ``provider_id``: the id an email
    service provider gave the message for this recipient (what its webhooks carry).
    """

    address: str
    verdict: Verdict
    reply: Reply
    refused: bool = False
    provider_id: str | None = None

    def as_json(self) -> list[object]:
        """[result, code, reply] and, when a provider gave one, its message id."""
        stored: list[object] = [self.verdict.value, self.reply.code, self.reply.text]
        if self.provider_id:
            stored.append(self.provider_id)
        return stored


@dataclass
class Outcome:
    """The result of one attempt at one message."""

    verdict: Verdict
    reply: Reply
    exception: str = ""  # dotted class name of the exception, if one was raised
    recipients: list[RecipientResult] = field(default_factory=list)
    message_id: str | None = None
    stage: str = ""  # where an SMTP conversation stopped: "mail", "rcpt" or "data"
    # The message as the delivery backend left it, stored, when the backend changed it
    # while sending (added a header, say); the log keeps this rather than the queued one.
    sent_data: str | None = None

    @property
    def attempted(self) -> list[str]:
        return [r.address for r in self.recipients]

    @property
    def delivered(self) -> list[RecipientResult]:
        """The recipients this attempt reached."""
        return [r for r in self.recipients if r.verdict is Verdict.SENT]

    @property
    def refused(self) -> list[RecipientResult]:
        """The recipients the server or provider refused, each with its own reply."""
        return [r for r in self.recipients if r.refused and r.verdict is not Verdict.SENT]

    @property
    def provider_ids(self) -> dict[str, str]:
        """Address -> the provider's message id, for each recipient that got one."""
        return {r.address: r.provider_id for r in self.recipients if r.provider_id}

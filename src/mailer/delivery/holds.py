"""Mail held back by a used-up quota: its claims given back, due when the quota allows.

The engine's ``before_send(alias)`` is the runner's rate limiter: it waits for the rate
limits that apply to the delivery alias, and returns when the alias's daily quota allows
the next message if it is used up (None: send now). The engine then raises
``QuotaReached`` and hands the rest of that alias's claims here. Holding is not an attempt: the
queue counts no retry and writes no log row (``MessageQuerySet.postpone``).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from mailer.delivery.outage import Outage
from mailer.exceptions import MailerError
from mailer.queue.message import Message, MessageQuerySet

Limiter = Callable[[str], datetime.datetime | None]


class QuotaReached(MailerError):
    """The delivery alias's quota is used up until ``until``: what is left waits for it."""

    def __init__(self, until: datetime.datetime) -> None:
        super().__init__(f"quota used up until {until.isoformat(timespec='seconds')}")
        self.until = until


class Holds:
    """The aliases an engine holds mail for, and until when."""

    def __init__(
        self,
        owner: str,
        queue: MessageQuerySet,
        outage: Outage,
        logger: logging.Logger,
        done: Callable[[list[Message]], None],
    ):
        """``done`` is told of the messages held back (their claims given back)."""
        self.owner = owner
        self.done = done
        self.queue = queue
        self.outage = outage
        self.logger = logger
        self.until: dict[str, datetime.datetime] = {}

    def held(self, mailer: str) -> bool:
        """Is mail for ``mailer`` (a delivery alias) to be held now?"""
        until = self.until.get(mailer) if self.until else None
        return until is not None and until > timezone.now()

    def hold(
        self,
        messages: list[Message],
        mailer: str,
        held: set[int],
        reached: QuotaReached | None = None,
    ) -> list[Message]:
        """Give back the claims of ``mailer``'s messages among ``messages`` not yet ``held``
        (its quota ``reached`` now, or earlier), due when its quota allows; add them to
        ``held``. Returns those that could not be given back now (the database failed):
        the engine releases them later."""
        if reached is not None:
            self.until[mailer] = reached.until
        until = self.until[mailer]
        found = [m for m in messages if m.mailer == mailer and m.pk not in held]
        if not found:
            return []
        held.update(m.pk for m in found)
        owners: dict[str, list[int]] = {}  # one shared by a sibling is still its claim
        for message in found:
            owners.setdefault(message.claimed_by or self.owner, []).append(message.pk)
        try:
            for owner, ids in owners.items():
                self.queue.model.objects.using(self.queue.db).postpone(owner, ids, until)
        except DatabaseError as error:
            self.outage.failed("holding mail back", error)
            if not connections[self.queue.db].in_atomic_block:
                close_old_connections()
            return found
        self.done(found)
        self.logger.info(
            "quota of %s used up: %d message(s) wait until %s",
            mailer or "the delivery backend",
            len(found),
            until.isoformat(timespec="seconds"),
        )
        return []

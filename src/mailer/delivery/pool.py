"""The claimed messages the delivery connections of one process hold, shared at the end.

Each connection (an ``Engine``) delivers the batch it claimed, in order. When
the queue has nothing left to claim, a connection that ran out takes half of
what the connection with the most left still holds, from the end of its
batch, so no connection stands idle while another still holds several
messages: the end of a drain goes at the full width of the connections.
Nothing is written for it: the claims belong to the same process (its lease
keeper renews them all), and results are recorded by message id. What a sibling
took is still its claimer's (``lent``): not a stray to give back. Once a claim
has found nothing, the others take their share without asking the database
again first, until a claim finds mail again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.queue.message import Message


class Pool:
    """The batches in hand of one process's connections (one per worker or run)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, deque[Message]] = {}  # owner -> messages not started yet
        self._claiming = 0  # connections between a claim and holding what it returned
        self._lent: dict[str, set[int]] = {}  # owner -> its claims a sibling took, not done
        self._dry = False  # the last claim found nothing due

    def take(self, owner: str, claim: Callable[[], list[Message]]) -> deque[Message]:
        """``owner``'s next messages: what ``claim()`` returns, or when it returns nothing,
        a share of a sibling's (at once, without claiming, while the queue is dry). The
        deque returned is ``owner``'s batch (empty: done)."""
        with self._cond:
            held = self._held.setdefault(owner, deque())
            if self._dry and not held:
                held.extend(self._half(owner))
                if held:
                    return held
            self._claiming += 1
        claimed: list[Message] = []
        try:
            claimed = claim()
        finally:
            with self._cond:
                self._claiming -= 1
                self._dry = not claimed
                held.extend(claimed)
                self._cond.notify_all()
        if not held:
            shared = self._share(owner)
            with self._cond:
                held.extend(shared)
        return held

    def next(self, held: deque[Message]) -> Message | None:
        """The next message of a batch, or None when it is done (or was shared out)."""
        with self._cond:
            return held.popleft() if held else None

    def drop(self, held: deque[Message]) -> list[Message]:
        """Everything still held in a batch, taken out of the pool (to be given back)."""
        with self._cond:
            left = list(held)
            held.clear()
            return left

    def remove(self, held: deque[Message], mailer: str) -> list[Message]:
        """Take the messages of delivery alias ``mailer`` out of a batch (held back)."""
        with self._cond:
            taken = [m for m in held if m.mailer == mailer]
            if taken:
                kept = [m for m in held if m.mailer != mailer]
                held.clear()
                held.extend(kept)
            return taken

    def drop_all(self, owner: str) -> list[Message]:
        """Everything ``owner`` still holds, taken out of the pool (to be given back)."""
        with self._cond:
            held = self._held.pop(owner, None)
        return list(held or ())

    def lent(self, owner: str) -> set[int]:
        """``owner``'s claims that siblings took over and have not finished with."""
        with self._cond:
            return set(self._lent.get(owner, ()))

    def done(self, messages: list[Message]) -> None:
        """These messages were handed to the recorder, or given back."""
        if not self._lent:
            return
        with self._cond:
            for message in messages:
                lent = self._lent.get(message.claimed_by)
                if lent is not None:
                    lent.discard(message.pk)

    def _share(self, owner: str, timeout: float = 5.0) -> list[Message]:
        """Half of the most another connection holds (if at least two), waiting while a
        sibling's claim is on its way (it may bring a batch to share)."""
        with self._cond:
            while True:
                taken = self._half(owner)
                if taken or not self._claiming or not self._cond.wait(timeout):
                    return taken

    def _half(self, owner: str) -> list[Message]:
        """Half of the most another connection holds, if at least two (holding ``_cond``)."""
        most = max(
            (held for name, held in self._held.items() if name != owner), key=len, default=None
        )
        if most is None or len(most) < 2:
            return []
        taken = [most.pop() for _ in range(len(most) // 2)][::-1]
        for message in taken:
            self._lent.setdefault(message.claimed_by, set()).add(message.pk)
        return taken


__all__ = ["Pool"]

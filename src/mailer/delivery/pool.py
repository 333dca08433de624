"""The claimed messages the delivery connections of one process hold, shared at the end.

Each connection (an ``Engine``) delivers the batch it claimed, in order. When
the queue has nothing left to claim, a connection that ran out takes half of
what the connection with the most left still holds (its last one, if it holds
one), from the end of its batch, so no connection stands idle while another
still holds a message it has not started: the end of a drain goes at the full
width of the connections, and the last messages end within one message's time.
Nothing is written for it: the claims belong to the same process (its lease
keeper renews them all), and results are recorded by message id. Once a claim
has found nothing, the others take their share without asking the database
again first, until a claim finds mail again.

The pool knows every claim its connections hold (``in_hand``): in a batch,
claimed ahead, or taken out of a batch -- being sent, or taken by a sibling --
until the connection is ``done`` with it (its result handed to the recorder, or
the claim given back). None of those is a stray to give back: a message being
sent when a claim of its connection fails and is retried stays its claim, and
is not claimed again for the next batch while it is being sent.

A give-back that failed may have committed all the same (its answer lost). Until it
is given back again (``settle``), no claim is made in its claimer's name: that claim
could take the message again, and the second give-back take it from under the
connection now holding it, queued and being sent at once. ``settle`` waits for a
claim in that name on its way, and leaves out what one took again.

With ``ahead`` (the threaded connections of a ``Delivery``), a connection's next
claim is made while it sends its last message: as that message is taken, the
pool's claiming thread, with a database connection of its own, runs the
connection's claim, and what it brings is that connection's next batch. So a
connection does not wait for a claim between batches. What a claim brings after
its connection stopped is given back with the rest (``drop_all`` waits for it).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from mailer.queue.message import Message

Claim = Callable[[], "list[Message]"]  # a connection's claim of its next batch


class Pool:
    """The batches in hand of one process's connections (one per worker or run)."""

    def __init__(self, *, ahead: bool = False) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, deque[Message]] = {}  # owner -> messages not started yet
        self._claiming = 0  # connections between a claim and holding what it returned
        self._claiming_for: dict[str, int] = {}  # owner -> its claims made by take() now
        # claimer -> the ids of its claims whose give-back failed, and may have committed
        self._owed: dict[str, set[int]] = {}
        # claimer -> its claims taken out of a batch (being sent, or taken by a sibling)
        # that the connection is not done with
        self._out: dict[str, set[int]] = {}
        self._dry = False  # the last claim found nothing due
        self._claims: dict[str, Claim] = {}  # owner -> its claim, for claiming ahead
        self._coming: set[str] = set()  # owners whose next claim is on its way
        self._next: dict[str, list[Message]] = {}  # owner -> its batch claimed ahead
        self._failed: dict[str, BaseException] = {}  # owner -> what its claim ahead raised
        self._jobs: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._claimer: threading.Thread | None = None
        if ahead:
            self._claimer = threading.Thread(target=self._claim_ahead, name="mailer-claim")
            self._claimer.daemon = True
            self._claimer.start()

    def close(self) -> None:
        """Stop the claiming thread (after every connection has stopped)."""
        if self._claimer is not None:
            self._jobs.put(None)
            self._claimer.join()
            self._claimer = None

    def prime(self, batches: dict[str, list[Message]]) -> None:
        """Hand each connection its first batch, claimed for all of them at once (by the
        first): what a connection takes is lent to it by that claimer."""
        with self._cond:
            for owner, batch in batches.items():
                self._next.setdefault(owner, []).extend(batch)

    def owners(self) -> list[str]:
        """The connections that hold messages, or have a batch waiting for them."""
        with self._cond:
            return sorted({*self._held, *self._next})

    def take(self, owner: str, claim: Claim) -> deque[Message]:
        """``owner``'s next messages: what ``claim()`` returns, or when it returns nothing,
        a share of a sibling's (at once, without claiming, while the queue is dry). The
        deque returned is ``owner``'s batch (empty: done). A claim made ahead is waited
        for, and what it raised is raised here."""
        with self._cond:
            held = self._held.setdefault(owner, deque())
            self._claims[owner] = claim
            self._cond.wait_for(lambda: owner not in self._coming)
            failed = self._failed.pop(owner, None)
            if failed is not None:
                raise failed
            if not held and self._next.get(owner):
                held.extend(self._next.pop(owner))
                return held  # claimed ahead
            if self._dry and not held:
                held.extend(self._half(owner))
                if held:
                    return held
            if self._owed.get(owner):  # no claim in its name until its give-backs are settled
                held.extend(self._half(owner))
                return held
            self._claiming += 1
            self._claiming_for[owner] = self._claiming_for.get(owner, 0) + 1
        claimed: list[Message] = []
        try:
            claimed = claim()
        finally:
            with self._cond:
                self._claiming -= 1
                self._claiming_for[owner] -= 1
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
            if not held:
                return None
            message = held.popleft()
            self._taken_out([message])  # being sent: its claim until done
            if not held and self._claimer is not None and not self._dry:
                self._ahead(held)
            return message

    def drop(self, held: deque[Message]) -> list[Message]:
        """Everything still held in a batch, taken out of the pool (to be given back)."""
        with self._cond:
            left = list(held)
            held.clear()
            self._taken_out(left)  # in hand until given back
            return left

    def remove(self, held: deque[Message], mailer: str) -> list[Message]:
        """Take the messages of delivery alias ``mailer`` out of a batch (held back)."""
        with self._cond:
            taken = [m for m in held if m.mailer == mailer]
            if taken:
                kept = [m for m in held if m.mailer != mailer]
                held.clear()
                held.extend(kept)
                self._taken_out(taken)  # in hand until held back
            return taken

    def drop_all(self, owner: str) -> list[Message]:
        """Everything ``owner`` still holds, taken out of the pool (to be given back)."""
        with self._cond:
            self._cond.wait_for(lambda: owner not in self._coming)  # a claim on its way
            self._failed.pop(owner, None)  # nothing claimed: nothing to give back
            self._claims.pop(owner, None)
            held = self._held.pop(owner, None)
            ahead = self._next.pop(owner, [])
            left = [*(held or ()), *ahead]
            self._taken_out(left)  # in hand until given back
        return left

    def in_hand(self, owner: str) -> set[int]:
        """The ids of ``owner``'s claims the connections hold: in a batch, claimed ahead,
        or taken out of a batch (being sent by ``owner`` or a sibling) and not ``done``."""
        with self._cond:
            return self._in_hand(owner)

    def _in_hand(self, owner: str) -> set[int]:
        found = set(self._out.get(owner, ()))
        for batch in [*self._held.values(), *self._next.values()]:
            found.update(m.pk for m in batch if m.claimed_by == owner)
        return found

    def owe(self, messages: list[Message], owner: str) -> None:
        """Giving these back failed (``owner`` gave them back; each is its claimer's, or
        ``owner``'s): no claim is made in their claimers' names until they are ``settle``d.
        No longer in hand."""
        with self._cond:
            for message in messages:
                claimer = message.claimed_by or owner
                self._owed.setdefault(claimer, set()).add(message.pk)
                out = self._out.get(claimer)
                if out is not None:
                    out.discard(message.pk)

    def settle(
        self,
        messages: list[Message],
        owner: str,
        give_back: Callable[[list[Message]], object],
        keep: set[int],
    ) -> None:
        """Give back again the ``messages`` owed (``owe``) with ``give_back``, leaving out
        those a claim took again since (the first give-back had committed) and those in
        ``keep`` (results not written yet). Waits for a claim on its way in their
        claimers' names first; no other starts until they are settled. If ``give_back``
        raises, they are owed still."""
        claimers = {message.claimed_by or owner for message in messages}
        with self._cond:
            self._cond.wait_for(
                lambda: not any(c in self._coming or self._claiming_for.get(c) for c in claimers)
            )
            again = set(keep)
            for claimer in claimers:
                again |= self._in_hand(claimer)
        give_back([m for m in messages if m.pk not in again])
        with self._cond:
            for message in messages:
                claimer = message.claimed_by or owner
                owed = self._owed.get(claimer)
                if owed is not None:
                    owed.discard(message.pk)
                    if not owed:
                        del self._owed[claimer]
            self._cond.notify_all()

    def done(self, messages: list[Message]) -> None:
        """These messages were handed to the recorder, or their claims given back (or
        postponed): no longer in hand."""
        with self._cond:
            for message in messages:
                out = self._out.get(message.claimed_by)
                if out is not None:
                    out.discard(message.pk)

    def _taken_out(self, messages: list[Message]) -> None:
        """These messages left their batch and are in hand until ``done`` (holding ``_cond``)."""
        for message in messages:
            self._out.setdefault(message.claimed_by, set()).add(message.pk)

    def _share(self, owner: str, timeout: float = 5.0) -> list[Message]:
        """Half of the most another connection holds (at least one), waiting while a
        sibling's claim is on its way (it may bring a batch to share)."""
        with self._cond:
            while True:
                taken = self._half(owner)
                if taken or not self._claiming or not self._cond.wait(timeout):
                    return taken

    def _ahead(self, held: deque[Message]) -> None:
        """Have the claiming thread claim the next batch of the connection whose batch
        ``held`` just ran out (holding ``_cond``)."""
        owner = next((name for name, mine in self._held.items() if mine is held), None)
        if owner is None or owner in self._coming or owner not in self._claims:
            return
        if self._owed.get(owner):  # no claim in its name until its give-backs are settled
            return
        self._coming.add(owner)
        self._claiming += 1
        self._jobs.put(owner)

    def _claim_ahead(self) -> None:
        """The claiming thread: run each connection's claim asked for, one at a time."""
        try:
            while (owner := self._jobs.get()) is not None:
                with self._cond:
                    claim = self._claims[owner]
                claimed: list[Message] = []
                failed: BaseException | None = None
                try:
                    claimed = claim()
                except BaseException as error:  # raised to the connection, by take()
                    failed = error
                with self._cond:
                    self._claiming -= 1
                    self._coming.discard(owner)
                    if failed is not None:
                        self._failed[owner] = failed
                    else:
                        self._dry = not claimed
                        self._next.setdefault(owner, []).extend(claimed)
                    self._cond.notify_all()
        finally:
            connections.close_all()  # this thread's own database connection

    def _half(self, owner: str) -> list[Message]:
        """Half of the most another connection holds, at least one (holding ``_cond``).

        Its last one, too: its holder is sending a message before it, or is about to
        start it (then the batch it took may be empty: it takes again)."""
        most = max(
            (held for name, held in self._held.items() if name != owner), key=len, default=None
        )
        if not most:
            return []
        return [most.pop() for _ in range(max(1, len(most) // 2))][::-1]


__all__ = ["Claim", "Pool"]

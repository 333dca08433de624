"""Recording delivery results as they happen: a continuous group commit.

The engine hands each result to its ``Recorder`` the moment the server has
answered. The recorder's thread, with a database connection of its own,
writes everything handed over since its last write in one short transaction
(``Message.objects.record``), and starts the next write as soon as that one is
done and a connection waits for it, or enough results are in to be worth a
write (one fewer than the connection may leave unwritten), or the first of
them is ``GROUP_SECONDS`` old. At a high rate each write covers several
messages (a few SQL statements for many messages); at a low rate each message
is written within milliseconds of its reply, the connection waiting for it;
no batch is waited for.

What a crash sends twice is what a server accepted and the database had not
committed yet. The ``Gate`` keeps that small across a worker's delivery
connections. Before a message is handed over (``admit``; for SMTP, before its
final "." is written -- its envelope and content go meanwhile, while the
previous results are being written):

* a connection may always have one message going, and more only while its
  unwritten results are worth less than ``AHEAD_SECONDS`` of its sending --
  so against a slow server each message's final "." waits for the commit of
  the one before it, and a crash re-sends at most one per connection;
* in all, no more than ``EXPOSED_LIMIT`` messages are sent or being sent
  without their result committed.

When a write fails, the recorder keeps the results in memory and retries
with backoff, and the gate lets no connection start another message until a
write succeeds. With ``give_up_after`` (``send_mail``, a Tasks drain), waiting
ends that many seconds after the write began: the results still unwritten are
logged with their ids and Message-IDs, and ``DatabaseUnreachable`` is raised.

Inside a transaction the caller holds, the claimed rows are visible to that
transaction only: there the results are written in the caller's thread, a
claim's worth at a time (nothing is committed before the caller commits
anyway).
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, close_old_connections, connections

from mailer.conf import settings
from mailer.delivery.outage import Backoff, Outage
from mailer.exceptions import DatabaseUnreachable
from mailer.queue.message import Message
from mailer.queue.outcome import Outcome
from mailer.queue.record import still_unrecorded

logger = logging.getLogger("mailer.engine")

EXPOSED_LIMIT = 10  # messages a worker may have sent or sending, results not committed
AHEAD_SECONDS = 0.04  # how far one connection's sending may run ahead of its recording
GROUP_SECONDS = 0.02  # how long a result waits for others to share its write, at most
STALLED_AFTER = 2.0  # a write taking this long: the database does not answer

Result = tuple[Message, Outcome]
_Item = tuple[Message, Outcome, str]  # a result and the connection that sent it


class Gate:
    """What a worker's connections may send while their results wait to be recorded.

    One per worker, shared by the recorders of all its delivery connections.
    """

    def __init__(self, limit: int = EXPOSED_LIMIT) -> None:
        self.limit = limit
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)  # the connections wait here, for writes
        self.exposed: dict[str, int] = {}  # owner -> messages admitted, results not committed
        self.failing: set[str] = set()  # owners whose recorder cannot write
        # A connection waits to be admitted: write what there is. Cleared by every
        # commit; a connection that still waits after it says so again.
        self.wanted = False

    def may_send(self, owner: str, allowance: int) -> bool:
        """May ``owner`` start another message? (Call holding ``cond``.)

        One message each is always allowed, so every connection keeps moving;
        beyond that, room is kept for every other connection's one.
        """
        if self.failing:
            return False
        own = self.exposed.get(owner, 0)
        if own == 0:
            return True
        if own > allowance:
            return False
        others = len(self.exposed) - 1
        return sum(self.exposed.values()) + others < self.limit


def allowance(seconds_per_message: float | None, limit: int = EXPOSED_LIMIT) -> int:
    """Results a connection sending at this speed may leave unwritten when it starts a message."""
    if seconds_per_message is None:
        return 0
    return min(limit - 1, int(AHEAD_SECONDS / max(seconds_per_message, 1e-6)))


def group_size(seconds_per_message: float | None, limit: int = EXPOSED_LIMIT) -> int:
    """Results worth a write at this speed: one fewer than the connection may leave
    unwritten, so that it need not stop while the write is done."""
    return max(1, allowance(seconds_per_message, limit) - 1)


class Admission:
    """One message's way past the gate, asked for by the transport at the last moment
    (its ``hand_over``): for SMTP just before the final ".", so that waiting for the
    results before it to be committed overlaps with the envelope's round trips. Keeps
    what the engine needs after the attempt: whether it was admitted, how long it
    waited (not the server's time), and what asking raised (for the engine to raise
    once the transport has left the server)."""

    def __init__(
        self,
        recorder: Recorder,
        owner: str,
        seconds_per_message: float | None,
        give_up_after: float | None,
    ) -> None:
        self.recorder = recorder
        self.owner = owner
        self.seconds_per_message = seconds_per_message
        self.give_up_after = give_up_after
        self.admitted = False
        self.waited = 0.0
        self.error: BaseException | None = None

    def __call__(self, wait: bool) -> bool:
        """May the message go (``Recorder.admit``)? False, too, once asking has raised."""
        if self.error is not None:
            return False
        began = time.monotonic()
        try:
            self.admitted = self.recorder.admit(
                self.seconds_per_message, self.give_up_after, self.owner, wait=wait
            )
        except BaseException as error:  # raised by the engine, out of the transport
            self.error = error
            return False
        finally:
            self.waited += time.monotonic() - began
        return self.admitted


class Recorder:
    """Writes the results of delivery connections as they come (see the module's docs).

    One per worker (or ``send_mail`` run), shared by its connections, so that each
    write covers what all of them were answered since the last one; an engine
    without one has its own. ``owner`` names it, and the results handed over
    without a connection's name.
    """

    def __init__(
        self,
        model: type[Message],
        using: str,
        owner: str,
        *,
        background: bool = True,
        gate: Gate | None = None,
        outage: Outage | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.using = using
        self.owner = owner
        self.gate = gate or Gate()
        self.outage = outage or Outage(logger)
        self.stop = stop or threading.Event()
        self._part = f"recording results of {owner}"
        # The recorder's thread waits here for work: handing a result over wakes it
        # alone, not every connection waiting for a write.
        self._work = threading.Condition(self.gate.lock)
        self._pending: list[_Item] = []
        self._owners: set[str] = {owner}  # connections whose results it wrote
        self._first_pending = 0.0  # when the oldest pending result was handed over
        self._group = 1  # results worth a write at the connection's speed
        self._writing: list[_Item] = []
        self._write_started: float | None = None
        self._flushing = False
        self._closing = False
        self._error = ""  # what the current write met, while it fails or hangs
        self._crashed: BaseException | None = None
        self._abandoned = threading.Event()
        self._lost: list[tuple[int, str]] = []  # what abandon() found unwritten
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"mailer-record-{owner}", daemon=True
            )
            self._thread.start()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    # -- the engine's side -----------------------------------------------------------

    def holding(self) -> set[int]:
        """The messages whose results are handed over and not yet written: still
        claimed by the connections that sent them, and not to be given back."""
        with self.gate.cond:
            return {message.pk for message, _, _ in self._writing + self._pending}

    def add(
        self, message: Message, outcome: Outcome, owner: str | None = None, *, admitted: bool = True
    ) -> None:
        """Hand over one result of connection ``owner``; it is written as soon as the
        recorder can. ``admitted``: the message was admitted (``admit``) before it went;
        one that never reached a server is counted here, as every result is until written."""
        item = (message, outcome, owner or self.owner)
        if self._thread is None:
            self._pending.append(item)
            if len(self._pending) >= settings.CLAIM_BATCH_SIZE:
                self._write_here()
            return
        with self.gate.cond:
            if not admitted:
                self.gate.exposed[item[2]] = self.gate.exposed.get(item[2], 0) + 1
            if not self._pending:
                self._first_pending = time.monotonic()
            self._pending.append(item)
            if len(self._pending) < self._group:
                return
            self._work.notify()
            waits = self._group == 1  # a slow connection: its next "." waits for this write
        if waits:
            _yield_to_others()

    def admit(
        self,
        seconds_per_message: float | None,
        give_up_after: float | None = None,
        owner: str | None = None,
        *,
        wait: bool = True,
    ) -> bool:
        """Wait until connection ``owner``, sending a message in ``seconds_per_message``,
        may hand a server another one.

        False when ``stop`` was set, or when recording failed while waiting:
        the claims in hand may have lapsed meanwhile, so the caller gives them
        back and claims again. Without ``wait``: False when it would have to wait
        (the write it waits for is started).
        """
        if self._thread is None:
            return not self.stop.is_set()
        gate = self.gate
        owner = owner or self.owner
        ahead = allowance(seconds_per_message, gate.limit)
        blocked = False
        with gate.cond:
            self._owners.add(owner)
            gate.exposed.setdefault(owner, 0)
            self._group = group_size(seconds_per_message, gate.limit)
            while True:
                self._raise_crash()
                if self.stop.is_set():
                    return False
                if gate.may_send(owner, ahead) and not self._stalled():
                    if blocked:
                        return False
                    gate.exposed[owner] += 1
                    return True
                blocked = blocked or bool(gate.failing) or self._stalled()
                self._give_up_if_due(give_up_after)
                if not gate.wanted:
                    gate.wanted = True
                    self._work.notify()
                if not wait:
                    return False
                gate.cond.wait(0.1)

    def flush(self, give_up_after: float | None = None, owner: str | None = None) -> None:
        """Return once everything handed over is written (or raise ``DatabaseUnreachable``);
        then connection ``owner`` has nothing exposed."""
        if self._thread is None:
            self._write_here()
            return
        with self.gate.cond:
            self._flushing = True
            self._work.notify()
            try:
                while self._pending or self._writing:
                    self._raise_crash()
                    self._give_up_if_due(give_up_after)
                    self.gate.cond.wait(0.1)
                # Everything is written: nothing of this connection's is exposed (also if
                # a message was admitted and never attempted, its run having failed).
                self.gate.exposed[owner or self.owner] = 0
                self.gate.cond.notify_all()
                self._raise_crash()
            finally:
                self._flushing = False

    def abandon(self, error: str) -> list[tuple[int, str]]:
        """Stop trying; log and return ``(id, Message-ID)`` of every result not written.

        Logged once; every later call returns the same list: whichever thread gives up
        first (a connection, or the pool's thread claiming ahead, whose error no
        connection may ever raise), each error names them all."""
        with self.gate.cond:
            if self._abandoned.is_set():
                return list(self._lost)
            unwritten = self._writing + self._pending
            self._pending = []
            self._abandoned.set()
            for owner in self._owners:
                self.gate.exposed[owner] = 0
            self.gate.failing.discard(self.owner)
            self.gate.cond.notify_all()
            self._work.notify()
        lost = [
            (message.pk, outcome.message_id or message.stored_message_id or "")
            for message, outcome, _ in unwritten
        ]
        self._lost = lost
        if lost:
            logger.error(
                "gave up recording %d accepted message(s), which may be sent again (%s): %s",
                len(lost),
                error,
                ", ".join(f"id {pk} {msgid}".rstrip() for pk, msgid in lost),
            )
        return lost

    def close(self) -> None:
        """Stop the thread (after ``flush``, nothing is left to write)."""
        if self._thread is None:
            return
        with self.gate.cond:
            self._closing = True
            self._work.notify()
        # A write stuck on an unreachable database is not waited for (a daemon thread).
        self._thread.join(timeout=0.5 if self.abandoned else 30)
        with self.gate.cond:
            for owner in self._owners:
                self.gate.exposed.pop(owner, None)
            self.gate.failing.discard(self.owner)
            self.gate.cond.notify_all()

    # -- helpers of the waits (called holding the gate's lock) -------------------------

    def _stalled(self) -> bool:
        started = self._write_started
        return started is not None and time.monotonic() - started >= STALLED_AFTER

    def _give_up_if_due(self, give_up_after: float | None) -> None:
        started = self._write_started
        if started is None:
            return
        waited = time.monotonic() - started
        if waited >= STALLED_AFTER and not self._error:
            self._error = f"no answer for {waited:.0f} s"
            self.outage.failed(self._part, self._error, began=started)
        if give_up_after is not None and waited >= give_up_after:
            error = self._error or f"no answer for {waited:.0f} s"
            raise DatabaseUnreachable(error, self.abandon(error))  # the lock is re-entrant

    def _raise_crash(self) -> None:
        crashed, self._crashed = self._crashed, None
        if crashed is not None:
            raise crashed

    # -- the recorder's thread ---------------------------------------------------------

    def _due(self) -> float | None:
        """0 if a write should start now; else how long to wait at most (None: no limit)."""
        if not self._pending:
            return None
        if len(self._pending) >= self._group or self.gate.wanted or self._flushing or self._closing:
            return 0
        return max(0.0, self._first_pending + GROUP_SECONDS - time.monotonic())

    def _run(self) -> None:
        gate = self.gate
        try:
            while not self.abandoned:
                with gate.cond:
                    while (wait := self._due()) != 0 and not (self._closing and not self._pending):
                        self._work.wait(wait)
                    if not self._pending:
                        return
                    batch, self._pending = self._pending, []
                    self._writing = batch
                    self._write_started = time.monotonic()
                written = self._write(batch)
                with gate.cond:
                    self._writing = []
                    self._write_started = None
                    if written and not self.abandoned:
                        for _, _, owner in batch:
                            gate.exposed[owner] -= 1
                    waited, gate.wanted = gate.wanted, False
                    gate.cond.notify_all()
                if waited:  # connections waited for this write: let them go first
                    _yield_to_others()
        finally:
            connections.close_all()

    def _write(self, batch: list[_Item]) -> bool:
        """Write ``batch``, retrying while the database fails; False if abandoned."""
        backoff = Backoff()
        retrying = False
        # Each message as claimed: a write changes the instances it records.
        claimed = {message.pk: message.__dict__.copy() for message, _, _ in batch}
        while not self.abandoned:
            began = time.monotonic()
            try:
                if retrying:  # the failed write may have committed: never apply a result twice
                    left = still_unrecorded(self.model.objects.using(self.using), claimed)
                    batch = [
                        (_restored(message, claimed[message.pk]), outcome, owner)
                        for message, outcome, owner in batch
                        if message.pk in left
                    ]
                if batch:
                    _record(self.model, self.using, batch)
            except DatabaseError as error:
                retrying = True
                self._error = " ".join(str(error).split()) or type(error).__name__
                with self.gate.cond:
                    self.gate.failing.add(self.owner)
                    self.gate.cond.notify_all()
                self.outage.failed(self._part, error, began=began)
                close_old_connections()
                self._abandoned.wait(backoff.next())
                continue
            except Exception as error:  # not the database's doing: the engine raises it
                with self.gate.cond:
                    self._crashed = error
                return True
            if self._error:
                self._error = ""
                with self.gate.cond:
                    self.gate.failing.discard(self.owner)
                    self.gate.cond.notify_all()
                self.outage.ok(self._part)
            return True
        return False

    def _write_here(self) -> None:
        results, self._pending = self._pending, []
        if results:
            _record(self.model, self.using, results)


def _yield_to_others() -> None:
    """Let a thread just woken run now (CPython: hand over the GIL).

    Against a slow server a connection, a moment before its next message's final ".",
    waits for the write of its last result; the recorder's thread, for the connection
    that handed it over. (A fast connection does not wait: it is not made to yield.)
    A thread woken on a condition still needs the GIL, which the waker keeps until it
    blocks or the interpreter's switch interval (5 ms) ends -- typically for its next
    message's work or the next write's. Measured against a relay at 50 ms with 16
    connections (``bench/relaytrace.py``), yielding here cuts about 2 ms of each
    message's 55-60."""
    time.sleep(0)


def _restored(message: Message, state: dict[str, object]) -> Message:
    """Another instance of ``message``'s model with ``state`` (its fields when claimed)."""
    restored = type(message).__new__(type(message))
    restored.__dict__.update(state)
    return restored


def _record(model: type[Message], using: str, items: list[_Item]) -> None:
    """Write results, each logged with the connection that sent it."""
    owners = {owner for _, _, owner in items}
    worker: str | dict[int, str] = (
        owners.pop() if len(owners) == 1 else {message.pk: owner for message, _, owner in items}
    )
    model.objects.using(using).record([(m, o) for m, o, _ in items], worker=worker)


__all__ = [
    "AHEAD_SECONDS",
    "EXPOSED_LIMIT",
    "GROUP_SECONDS",
    "Admission",
    "Gate",
    "Recorder",
    "allowance",
    "group_size",
]

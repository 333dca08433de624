"""The delivery engine: claim due mail, deliver it, record what happened.

A run repeats three steps until nothing is due (or a limit is reached):

1. claim a batch in one short transaction (``Message.objects.claim``);
2. deliver each message with no transaction open, over connections opened
   once per run and reused (``Transport``);
3. hand each result, as soon as it is known, to the ``Recorder``, which
   writes continuously (``mailer.delivery.recorder``): a worker that dies leaves at
   most a few messages sent but unrecorded, and one that cannot record stops
   sending.

One message's failure -- at decode, render or send -- is recorded on that
message and the run goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from mailer.conf import DEFAULT_ERROR_HANDLER, settings
from mailer.delivery.classify import classify
from mailer.delivery.handlers import (
    as_exception,
    ask_handler,
    handle_backend_exception,
    handle_delivery_exception,
    undecodable,
)
from mailer.delivery.holds import Holds, Limiter, QuotaReached
from mailer.delivery.outage import Backoff, Outage
from mailer.delivery.pool import Pool
from mailer.delivery.recipients import blocked_recipients, dont_send_active, pending_recipients
from mailer.delivery.recorder import Admission, Gate, Recorder
from mailer.delivery.tally import SendCounts, Tally
from mailer.delivery.taper import Taper
from mailer.delivery.transport import ConnectionDown, NotHandedOver, Transport
from mailer.exceptions import DatabaseUnreachable, UndecodableMessage
from mailer.message.letter import Letter
from mailer.queue import retry
from mailer.queue.aliases import alias_problem
from mailer.queue.interrupt import deadline
from mailer.queue.message import Message, MessageQuerySet
from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict
from mailer.queue.rows import check_loaded_size, too_large
from mailer.scrub import scrubbed_logger, unstorable

logger = scrubbed_logger("mailer.engine")  # replies and tracebacks may quote secrets

INITIAL_CLAIM = 4  # what a worker's slot claims before its delivery speed is known
FIRST_BATCH = 50  # what a run claims before it knows how big the messages are
BATCH_BYTES = 8_000_000  # stored mail a batch may hold
CLAIM_SECONDS = 0.5  # work a batch may hold: short leases, and slots finish together


class Engine:
    """Drains the queue for one claim owner (a worker's delivery slot)."""

    def __init__(
        self,
        owner: str,
        *,
        queryset: MessageQuerySet | None = None,
        stop: threading.Event | None = None,
        before_send: Limiter | None = None,
        on_result: Callable[[SendCounts], None] | None = None,
        max_batch: int | None = None,
        share: int = 1,
        first_claim: int | None = None,
        gate: Gate | None = None,
        outage: Outage | None = None,
        give_up_after: float | None = None,
        pool: Pool | None = None,
        tally: Tally | None = None,
        recorder: Recorder | None = None,
        dont_send: bool | None = None,
        taper: Taper | None = None,
    ) -> None:
        """``owner`` is the claim owner (see ``mailer.runner.leases``); ``before_send`` the rate
        limiter (``mailer.delivery.holds``); ``share`` how many engines of one worker drain the
        queue together, ``gate`` what they share to keep unrecorded mail small, ``outage``
        where they say the database is away, ``pool`` where they share out claimed batches
        at the end of the queue, ``tally`` what they did together (the run's limits;
        ``on_result`` is told) and ``recorder`` what writes their results (without, each
        engine has its own); ``dont_send``: has the don't-send list entries (the caller just
        asked, for the first run); ``taper`` what sizes their claims at the queue's end.
        With ``give_up_after``, a run that cannot reach the database for that many seconds
        raises ``DatabaseUnreachable``; else it waits.
        An Engine may ``run()`` many times; its connections stay open until ``close()``.
        """
        self.owner = owner
        self.queue: MessageQuerySet = queryset if queryset is not None else Message.objects.all()
        self.using = self.queue.db
        self.stop = stop or threading.Event()
        self.before_send = before_send  # the runner's rate limiter, if there is one
        self.on_result = on_result
        self.max_batch = max_batch if max_batch is not None else settings.EMAIL_MAX_BATCH
        self.max_deferred = settings.EMAIL_MAX_DEFERRED
        self.throttle = settings.EMAIL_THROTTLE
        self.handler_path = settings.ERROR_HANDLER
        self.handler: Callable[..., tuple[Any, str]] = import_string(self.handler_path)
        self.custom_handler = self.handler is not handle_delivery_exception
        self.transports: dict[str, Transport] = {}
        self.counts = SendCounts()
        self._handed: set[int] = set()  # messages whose result went to the recorder
        self._admission: Admission | None = None  # of the message being sent
        self._unreleased: list[Message] = []  # claims that could not be given back yet
        self._seconds_per_message: float | None = None
        self._bytes_per_message: float | None = None
        self._recorder: Recorder | None = None
        self._dont_send_known = dont_send
        self._alias_problems: dict[str, str | None] = {}  # per mailer alias, for this engine
        self.share = max(share, 1)
        self.connection_down = False  # the last run stopped: the delivery server was unreachable
        self.first_claim = first_claim
        self.gate = gate or Gate()
        self.outage = outage or Outage(logger)
        self.give_up_after = give_up_after
        self.pool = pool or Pool()
        self._shared_recorder = recorder
        self._own_tally = tally is None
        self.tally = tally or Tally()
        self.taper = taper  # smaller claims at the queue's end, while other workers drain it
        self._max_size = settings.MAX_MESSAGE_SIZE
        self.holds = Holds(owner, self.queue, self.outage, logger, done=self.pool.done)

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SendCounts:
        """Deliver due mail until none is left, a limit is reached or ``stop`` is set.

        Returns what this run did. Delivery connections are left open for the
        next run; call ``close()`` when done.
        """
        self.counts = SendCounts()
        if self._own_tally:
            self.tally = Tally()
        self.connection_down = False
        self._handed = set()
        self._max_size = settings.MAX_MESSAGE_SIZE  # read once a run, not once a message
        if self._recorder is not None and self._recorder.abandoned:
            self._recorder.close()
            self._recorder = None
        try:
            known, self._dont_send_known = self._dont_send_known, None
            self._check_dont_send = dont_send_active(self.using) if known is None else known
            while not self.stop.is_set() and not self._limit_reached():
                self._release_unfinished([])  # what could not be given back before
                held = self.pool.take(self.owner, self._claim)
                if not held:
                    if self._unreleased:  # given back only now, those are due again
                        self._release_unfinished([])
                        if not self._unreleased:
                            continue
                    break
                self._deliver_batch(held)
        except ConnectionDown as down:
            self.connection_down = True
            logger.error("%s, stopping this run: %s", down.why, down)
        finally:
            # After giving up, the database is not asked again: the claims come back
            # when their lease ends, or at once when a run starts again on this host.
            recorder = self._recorder_in_use()
            if recorder is not None and not recorder.abandoned:
                try:
                    recorder.flush(self._give_up_after(), self.owner)
                finally:
                    if not recorder.abandoned:
                        self._release_unfinished(self.pool.drop_all(self.owner))
        return self.counts

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    @property
    def owes_claims(self) -> bool:
        """Claims of the last run that could not be given back yet (the next run tries)."""
        return bool(self._unreleased)

    def _give_up_after(self) -> float | None:
        """How long to wait for an unreachable database; a stopping worker waits no more
        than ``send_mail`` does."""
        if self.give_up_after is None and self.stop.is_set():
            return settings.RECORD_TIMEOUT
        return self.give_up_after

    def _claim(self) -> list[Message]:
        """Claim the next batch, retrying while the database does not answer."""
        backoff = Backoff()
        failing_since: float | None = None
        while True:
            started = time.monotonic()
            limit = self._give_up_after()
            left = None if limit is None else limit - (started - (failing_since or started))
            try:
                with deadline(self.using, left):
                    if failing_since is not None:
                        # The failed claim may have committed all the same.
                        self._release_strays()
                    claimed = self.queue.claim(
                        self.owner, self._claim_size(), lease=settings.LEASE_SECONDS
                    )
            except DatabaseError as error:
                if connections[self.using].in_atomic_block:
                    raise  # the caller's transaction is broken: nothing to retry
                self.outage.failed("claiming mail", error, began=started)
                now = time.monotonic()
                failing_since = failing_since or started
                if limit is not None and now - failing_since >= limit:
                    recorder = self._recorder_in_use()
                    lost = recorder.abandon(str(error)) if recorder else []
                    raise DatabaseUnreachable(str(error).strip(), lost) from error
                close_old_connections()
                if self.stop.wait(backoff.next()):
                    return []
                continue
            self.outage.ok("claiming mail")
            return claimed

    def _release_strays(self) -> None:
        # Every claim of this connection in hand -- above all the message it may be
        # sending while the pool's thread claims its next batch -- is not a stray.
        keep = {m.pk for m in self._unreleased} | self.pool.in_hand(self.owner)
        recorder = self._recorder_in_use()
        if recorder is not None:
            keep |= recorder.holding()
        self.queue.model.objects.using(self.using).release_strays(self.owner, keep)

    def _claim_size(self) -> int:
        """About half a second of work (so leases stay short and parallel slots share
        out the queue) and at most BATCH_BYTES of stored mail (so memory does not grow with
        message size), at most MAILER_CLAIM_BATCH_SIZE."""
        size = settings.CLAIM_BATCH_SIZE
        if self._bytes_per_message is None:
            size = min(size, FIRST_BATCH)
        else:
            size = min(size, max(1, int(BATCH_BYTES / max(self._bytes_per_message, 1.0))))
        if self._seconds_per_message is None:
            # Until the speed is known, share out the batch; a worker claims only a few
            # (first_claim): a whole batch could be minutes of work on a slow server,
            # kept from the other workers, which may be starting just now.
            size = max(1, min(size // self.share, self.first_claim or size))
        else:
            size = max(1, min(size, int(CLAIM_SECONDS / max(self._seconds_per_message, 1e-6))))
        if self.max_batch is not None:
            size = min(size, max(self.max_batch - self.tally.counts.sent, 1))
        if self.taper is not None and self._seconds_per_message is not None:
            size = self.taper.size(self.queue, size)
        return size

    def _limit_reached(self, *, start: bool = False) -> bool:
        """Has the run (its connections together) reached MAILER_EMAIL_MAX_BATCH or
        MAILER_EMAIL_MAX_DEFERRED, counting messages being sent? With ``start``, if
        not, one more message is being sent (``Tally.limit``). Logged once a run."""
        reached = self.tally.limit(self.max_batch, self.max_deferred, start=start)
        if reached:  # django-mailer's words, which monitoring may grep for
            say, name, limit = (
                (logger.info, "MAX_BATCH", self.max_batch)
                if reached == "max_batch"
                else (logger.warning, "MAX_DEFERRED", self.max_deferred)
            )
            say(f"MAILER_EMAIL_{name} (%s) reached, stopping for this round", limit)
        return reached is not None

    def _deliver_batch(self, held: deque[Message]) -> None:
        """Deliver the batch in hand, in order, while it lasts (a sibling that ran out
        may take some of its end: see ``mailer.delivery.pool``)."""
        batch = list(held)
        if not batch:  # a sibling that ran out took it before this connection started it
            return
        size = sum(m.stored_size for m in batch) / len(batch)  # set by claim(): read or not
        previous = self._bytes_per_message
        self._bytes_per_message = size if previous is None else 0.5 * previous + 0.5 * size
        blocked = blocked_recipients(batch, self.using) if self._check_dont_send else set()
        kept: set[int] = set()  # held back with an earlier message of their alias
        while (message := self.pool.next(held)) is not None:
            if message.pk in kept:
                self.pool.done([message])  # held back already
                continue
            if self.holds.held(message.mailer):
                alias = [message, *self.pool.remove(held, message.mailer)]
                self._owe(self.holds.hold(alias, message.mailer, kept))
                continue
            if self.stop.is_set() or self._limit_reached(start=True):
                self._release_unfinished([message, *self.pool.drop(held)])
                return
            admission = self._admission = Admission(
                self.recorder, self.owner, self._seconds_per_message, self._give_up_after()
            )
            started = time.monotonic()
            try:
                outcome = self._attempt(message, blocked)
            except NotHandedOver:
                if admission.error is not None:
                    raise admission.error from None
                self.tally.cancel()  # started above, not sent after all
                self._release_unfinished([message, *self.pool.drop(held)])
                return
            except ConnectionDown as down:
                self._add(message, down.outcome)
                self._release_unfinished(self.pool.drop(held))
                raise
            except QuotaReached as used_up:
                self.tally.cancel()
                alias = [message, *self.pool.remove(held, message.mailer)]
                self._owe(self.holds.hold(alias, message.mailer, kept, used_up))
                continue
            self._add(message, outcome)
            self._measure(time.monotonic() - started - admission.waited)
            if self.throttle:
                time.sleep(self.throttle)

    def _measure(self, seconds: float) -> None:
        previous = self._seconds_per_message
        self._seconds_per_message = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _release_unfinished(self, messages: list[Message]) -> None:
        """Give back claims not attempted; those that cannot be given back now are tried
        again before the next claim (``Pool.owe``: a failed give-back may have committed;
        until then no claim is made in their claimers' names)."""
        recorder = self._recorder_in_use()
        if recorder is not None and recorder.abandoned:
            return  # gave up on the database (maybe a sibling did): it is not asked again
        owed = [m for m in self._unreleased if m.pk not in self._handed]
        fresh = [m for m in messages if m.pk not in self._handed]
        self._unreleased = []
        if not owed and not fresh:
            return
        queue = self.queue.model.objects.using(self.using)
        try:
            if owed:
                keep = recorder.holding() if recorder is not None else set()
                self.pool.settle(
                    owed, self.owner, lambda rest: queue.release_each(rest, self.owner), keep
                )
                owed = []
            if fresh:
                queue.release_each(fresh, self.owner)
                self.pool.done(fresh)
        except DatabaseError as error:
            self._unreleased = owed
            self._owe(fresh)
            self.outage.failed("giving back claims", error)
            if not connections[self.using].in_atomic_block:
                close_old_connections()  # a connection cut: the next try opens another
        else:
            self.outage.ok("giving back claims")

    def _owe(self, messages: list[Message]) -> None:
        """These claims could not be given back: tried again later (``_release_unfinished``)."""
        self.pool.owe(messages, self.owner)
        self._unreleased += messages

    def _add(self, message: Message, outcome: Outcome) -> None:
        verdict = outcome.verdict
        if verdict in (Verdict.SENT, Verdict.SKIPPED):
            one = SendCounts(sent=int(verdict is Verdict.SENT))
        elif verdict is Verdict.TRANSIENT and not retry.exhausted(
            message.retry_count + 1, message.when_added, timezone.now()
        ):
            one = SendCounts(deferred=1)
        else:
            one = SendCounts(failed=1)
        self.counts += one
        level = logging.INFO if verdict is Verdict.SENT else logging.WARNING
        if logger.isEnabledFor(level):
            to = ", ".join(outcome.attempted)
            said = (verdict.value, message.pk, outcome.message_id or "", to, outcome.reply)
            logger.log(level, "%s message %s (%s) to %s: %s", *said)
        self._handed.add(message.pk)
        admitted = self._admission is not None and self._admission.admitted
        self.recorder.add(message, outcome, self.owner, admitted=admitted)  # the recorder's now
        self.pool.done([message])
        self.tally.add(one, self.on_result)

    def _recorder_in_use(self) -> Recorder | None:
        return self._shared_recorder or self._recorder

    @property
    def recorder(self) -> Recorder:
        """The recorder to hand results to: the shared one, or the engine's own."""
        if self._shared_recorder is not None:
            return self._shared_recorder
        if self._recorder is None:
            self._recorder = Recorder(
                self.queue.model,
                self.using,
                self.owner,
                # Rows claimed in the caller's transaction are visible to it alone.
                background=not connections[self.using].in_atomic_block,
                gate=self.gate,
                outage=self.outage,
                stop=self.stop,
            )
        return self._recorder

    # -- one message -----------------------------------------------------------------

    def _attempt(self, message: Message, blocked: set[str]) -> Outcome:
        now = timezone.now()
        if message.expires_at is not None and message.expires_at <= now:
            when = message.expires_at.isoformat(timespec="seconds")
            reply = Reply(None, f"expired at {when} before it could be sent")
            return Outcome(Verdict.PERMANENT, reply, "", [], message.stored_message_id)
        try:
            letter, msgid, recipients, skipped = self._prepare(message, blocked)
        except Exception as error:  # whatever the row holds, it fails alone: the run goes on
            return undecodable(error)
        if not recipients:
            verdict = Verdict.SKIPPED if skipped else Verdict.SENT
            why = "every remaining recipient is on the don't-send list"
            reply = Reply(None, why if skipped else "nothing left to send")
            return Outcome(verdict, reply, "", skipped, msgid)
        outcome = self._send(message, letter, recipients)
        outcome.message_id = msgid
        outcome.recipients.extend(skipped)
        return outcome

    def _prepare(
        self, message: Message, blocked: set[str]
    ) -> tuple[Letter, str | None, list[str], list[RecipientResult]]:
        """Everything read from the row before sending: the letter, its Message-ID, the
        recipients still to send to and those the don't-send list skips. Raises on a row
        that is too large or malformed in any way."""
        limit = self._max_size
        if message.message_data is None:  # claim() did not read it: over the limit
            raise too_large(message.stored_size, limit)
        check_loaded_size(message.message_data, limit)
        letter = Letter.load(message.message_data)
        msgid = letter.message_id
        if msgid is not None and unstorable(msgid):
            raise UndecodableMessage("the Message-ID holds NUL or a lone surrogate")
        if message.mailer not in self._alias_problems:
            self._alias_problems[message.mailer] = alias_problem(message.mailer)
        problem = self._alias_problems[message.mailer]
        if problem:
            raise UndecodableMessage(problem)
        recipients, skipped = pending_recipients(letter, message.recipient_results, blocked)
        return letter, msgid, recipients, skipped

    def _send(self, message: Message, letter: Letter, recipients: list[str]) -> Outcome:
        transport = self.transports.get(message.mailer)
        if transport is None:
            transport = self.transports[message.mailer] = Transport(message.mailer)
        try:
            transport.connect()
        except Exception as error:
            transport.close()
            outcome = classify(error, recipients)
            if outcome.verdict is Verdict.PERMANENT:
                outcome.verdict = Verdict.TRANSIENT  # the connection, not the message, is at fault
            raise ConnectionDown.after(error, outcome) from error
        if not transport.smtp:
            try:
                letter.email  # noqa: B018 -- the backend is given Django's EmailMessage
            except Exception as error:  # whatever the row holds, it fails alone
                return undecodable(error)
        if self.before_send is not None and (until := self.before_send(message.mailer)):
            raise QuotaReached(until)
        try:
            outcome = transport.send(letter, recipients, self._admission)
        except (ConnectionDown, NotHandedOver):
            raise  # a misconfigured backend (every message would fail alike), or not sent
        except Exception as error:
            return ask_handler(
                self.handler, self.handler_path, transport, message, error, recipients
            )
        if outcome.verdict is not Verdict.SENT and self.custom_handler:
            refusal = as_exception(outcome, letter.from_email)
            return ask_handler(
                self.handler, self.handler_path, transport, message, refusal, recipients, outcome
            )
        return outcome


__all__ = [
    "DEFAULT_ERROR_HANDLER",
    "Engine",
    "SendCounts",
    "handle_backend_exception",
    "handle_delivery_exception",
]

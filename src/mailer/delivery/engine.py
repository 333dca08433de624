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
from collections.abc import Callable
from typing import Any, NamedTuple

from django.core.mail import EmailMessage
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from mailer.conf import DEFAULT_ERROR_HANDLER, settings
from mailer.delivery.classify import classify, exception_name
from mailer.delivery.handlers import (
    as_exception,
    handle_backend_exception,
    handle_delivery_exception,
    handler_raised,
    handler_said,
)
from mailer.delivery.holds import Holds, Limiter, QuotaReached
from mailer.delivery.outage import Backoff, Outage
from mailer.delivery.recipients import pending_recipients
from mailer.delivery.recorder import Gate, Recorder
from mailer.delivery.transport import ConnectionDown, Transport
from mailer.exceptions import DatabaseUnreachable, UndecodableMessage
from mailer.message import codec
from mailer.message.summary import document_summary
from mailer.queue import retry
from mailer.queue.aliases import alias_problem
from mailer.queue.dontsend import DontSendEntry
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


class SendCounts(NamedTuple):
    """What a run did: messages sent, deferred (to be retried) and failed."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __add__(self, other: object) -> SendCounts:
        if not isinstance(other, SendCounts):
            return NotImplemented
        return SendCounts(*(a + b for a, b in zip(self, other, strict=True)))


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
    ) -> None:
        """``owner`` is the claim owner (see ``mailer.runner.leases``); ``before_send`` the rate
        limiter (``mailer.delivery.holds``); ``share`` how many engines of one worker drain the
        queue together, ``gate`` what they share to keep unrecorded mail small, and ``outage``
        where they say the database is away. With ``give_up_after``, a run that cannot reach the
        database for that many seconds raises ``DatabaseUnreachable``; without, it waits (until
        ``stop``).

        An Engine may ``run()`` many times; its delivery connections stay open
        between runs until ``close()``.
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
        self._unreleased: list[Message] = []  # claims that could not be given back yet
        self._seconds_per_message: float | None = None
        self._bytes_per_message: float | None = None
        self._recorder: Recorder | None = None
        self._check_dont_send = True
        self._alias_problems: dict[str, str | None] = {}  # per mailer alias, for this engine
        self.share = max(share, 1)
        self.connection_down = False  # the last run stopped: the delivery server was unreachable
        self.first_claim = first_claim
        self.gate = gate or Gate()
        self.outage = outage or Outage(logger)
        self.give_up_after = give_up_after
        self.holds = Holds(owner, self.queue, self.outage, logger)

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SendCounts:
        """Deliver due mail until none is left, a limit is reached or ``stop`` is set.

        Returns what this run did. Delivery connections are left open for the
        next run; call ``close()`` when done.
        """
        self.counts = SendCounts()
        self.connection_down = False
        self._limit_said = False
        self._handed = set()
        if self._recorder is not None and self._recorder.abandoned:
            self._recorder.close()
            self._recorder = None
        claimed: list[Message] = []
        try:
            self._check_dont_send = DontSendEntry.objects.using(self.using).active().exists()
            while not self.stop.is_set() and not self._limit_reached():
                self._release_unfinished([])  # what could not be given back before
                claimed = self._claim()
                if not claimed:
                    break
                self._deliver_batch(claimed)
                claimed = []
        except ConnectionDown as down:
            self.connection_down = True
            logger.error("%s, stopping this run: %s", down.why, down)
        finally:
            # After giving up, the database is not asked again: the claims come back
            # when their lease ends, or at once when a run starts again on this host.
            if self._recorder is not None and not self._recorder.abandoned:
                try:
                    self._recorder.flush(self._give_up_after())
                finally:
                    if not self._recorder.abandoned:
                        self._release_unfinished(claimed)
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
                    lost = self._recorder.abandon(str(error)) if self._recorder else []
                    raise DatabaseUnreachable(str(error).strip(), lost) from error
                close_old_connections()
                if self.stop.wait(backoff.next()):
                    return []
                continue
            self.outage.ok("claiming mail")
            return claimed

    def _release_strays(self) -> None:
        keep = {m.pk for m in self._unreleased}
        if self._recorder is not None:
            keep |= self._recorder.holding()
        self.queue.model.objects.using(self.using).release_strays(self.owner, keep)

    def _admit(self) -> bool:
        """May the next message go? Waits while results wait to be recorded (see
        ``mailer.delivery.recorder``); False if the claims in hand should be given back."""
        return self.recorder.admit(self._seconds_per_message, self._give_up_after())

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
            size = min(size, max(self.max_batch - self.counts.sent, 1))
        return size

    def _limit_reached(self) -> bool:
        """Has this run reached MAILER_EMAIL_MAX_BATCH or _MAX_DEFERRED? Logged once a run."""
        if self.max_batch is not None and self.counts.sent >= self.max_batch:
            say, name, limit = logger.info, "MAX_BATCH", self.max_batch
        elif (
            self.max_deferred is not None
            and self.counts.deferred + self.counts.failed >= self.max_deferred
        ):
            say, name, limit = logger.warning, "MAX_DEFERRED", self.max_deferred
        else:
            return False
        if not self._limit_said:  # django-mailer's words, which monitoring may grep for
            say(f"MAILER_EMAIL_{name} (%s) reached, stopping for this round", limit)
        self._limit_said = True
        return True

    def _deliver_batch(self, batch: list[Message]) -> None:
        size = sum(m.stored_size for m in batch) / len(batch)  # set by claim(): read or not
        previous = self._bytes_per_message
        self._bytes_per_message = size if previous is None else 0.5 * previous + 0.5 * size
        blocked = self._blocked_recipients(batch)
        held: set[int] = set()  # held back with an earlier message of their alias
        for index, message in enumerate(batch):
            if message.pk in held or self.holds.held(message.mailer):
                self._unreleased += self.holds.hold(batch[index:], message.mailer, held)
                continue
            if self.stop.is_set() or self._limit_reached() or not self._admit():
                self._release_unfinished([m for m in batch[index:] if m.pk not in held])
                return
            started = time.monotonic()
            try:
                outcome = self._attempt(message, blocked)
            except ConnectionDown as down:
                self._add(message, down.outcome)
                self._release_unfinished(batch[index + 1 :])
                raise
            except QuotaReached as used_up:
                self.recorder.withdraw()  # admitted, but no server saw it
                self._unreleased += self.holds.hold(batch[index:], message.mailer, held, used_up)
                continue
            self._add(message, outcome)
            self._measure(time.monotonic() - started)
            if self.throttle:
                time.sleep(self.throttle)

    def _measure(self, seconds: float) -> None:
        previous = self._seconds_per_message
        self._seconds_per_message = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _release_unfinished(self, messages: list[Message]) -> None:
        """Give back claims not attempted; those that cannot be given back now are
        tried again before the next claim (their lease is renewed while this worker
        lives; after it exits, the next run on this host takes them back)."""
        left = [m for m in self._unreleased + messages if m.pk not in self._handed]
        self._unreleased = []
        if not left:
            return
        try:
            self.queue.model.objects.using(self.using).release(self.owner, [m.pk for m in left])
        except DatabaseError as error:
            self._unreleased = left
            self.outage.failed("giving back claims", error)
            if not connections[self.using].in_atomic_block:
                close_old_connections()  # a connection cut: the next try opens another
        else:
            self.outage.ok("giving back claims")

    def _add(self, message: Message, outcome: Outcome) -> None:
        verdict = outcome.verdict
        sent, deferred, failed = self.counts
        if verdict in (Verdict.SENT, Verdict.SKIPPED):
            sent += verdict is Verdict.SENT
        elif verdict is Verdict.TRANSIENT and not retry.exhausted(
            message.retry_count + 1, message.when_added, timezone.now()
        ):
            deferred += 1
        else:
            failed += 1
        self.counts = SendCounts(sent, deferred, failed)
        level = logging.INFO if verdict is Verdict.SENT else logging.WARNING
        logger.log(
            level,
            "%s message %s (%s) to %s: %s",
            verdict.value,
            message.pk,
            outcome.message_id or "",
            ", ".join(outcome.attempted),
            outcome.reply,
        )
        self._handed.add(message.pk)
        self.recorder.add(message, outcome)  # last: from here on the recorder's thread owns it
        if self.on_result is not None:
            self.on_result(self.counts)

    @property
    def recorder(self) -> Recorder:
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

    def _blocked_recipients(self, batch: list[Message]) -> set[str]:
        """Recipients of ``batch`` on the don't-send list: one query, none if the list is empty.

        Reads only the addresses of each row's summary; a row too large to have been read,
        or whose data is not a message, adds none (and is failed when its turn comes).
        """
        if not self._check_dont_send:
            return set()
        addresses: list[str] = []
        for message in batch:
            if message.message_data is None:
                continue
            summary = document_summary(message.message_data)
            for field in ("to", "cc", "bcc"):
                addresses.extend(summary.get(field, ()))
        return DontSendEntry.objects.using(self.using).blocked(addresses)

    def _attempt(self, message: Message, blocked: set[str]) -> Outcome:
        now = timezone.now()
        if message.expires_at is not None and message.expires_at <= now:
            when = message.expires_at.isoformat(timespec="seconds")
            reply = Reply(None, f"expired at {when} before it could be sent")
            return Outcome(Verdict.PERMANENT, reply, "", [], message.stored_message_id)
        try:
            email, msgid, recipients, skipped = self._prepare(message, blocked)
        except Exception as error:  # whatever the row holds, it fails alone: the run goes on
            if not isinstance(error, UndecodableMessage):
                error = UndecodableMessage(f"{exception_name(error)}: {error}")
            outcome = classify(error)
            outcome.verdict = Verdict.PERMANENT
            return outcome
        if not recipients:
            verdict = Verdict.SKIPPED if skipped else Verdict.SENT
            reply = Reply(
                None,
                "every remaining recipient is on the don't-send list"
                if skipped
                else "nothing left to send",
            )
            return Outcome(verdict, reply, "", skipped, msgid)
        outcome = self._send(message, email, recipients)
        outcome.message_id = msgid
        outcome.recipients.extend(skipped)
        return outcome

    def _prepare(
        self, message: Message, blocked: set[str]
    ) -> tuple[EmailMessage, str | None, list[str], list[RecipientResult]]:
        """Everything read from the row before sending: the message, its Message-ID, the
        recipients still to send to and those the don't-send list skips. Raises on a row
        that is too large or malformed in any way."""
        limit = settings.MAX_MESSAGE_SIZE
        if message.message_data is None:  # claim() did not read it: over the limit
            raise too_large(message.stored_size, limit)
        check_loaded_size(message.message_data, limit)
        email = codec.decode(message.message_data)
        msgid = codec.message_id(email)
        if msgid is not None and unstorable(msgid):
            raise UndecodableMessage("the Message-ID holds NUL or a lone surrogate")
        if message.mailer not in self._alias_problems:
            self._alias_problems[message.mailer] = alias_problem(message.mailer)
        problem = self._alias_problems[message.mailer]
        if problem:
            raise UndecodableMessage(problem)
        recipients, skipped = pending_recipients(email, message.recipient_results, blocked)
        return email, msgid, recipients, skipped

    def _send(self, message: Message, email: EmailMessage, recipients: list[str]) -> Outcome:
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
        if self.before_send is not None and (until := self.before_send(message.mailer)):
            raise QuotaReached(until)
        try:
            outcome = transport.send(email, recipients)
        except ConnectionDown:
            raise  # the backend is misconfigured: every message would fail alike
        except Exception as error:
            return self._ask_handler(transport, message, error, recipients)
        if outcome.verdict is not Verdict.SENT and self.custom_handler:
            refusal = as_exception(outcome, email.from_email)
            return self._ask_handler(transport, message, refusal, recipients, outcome)
        return outcome

    def _ask_handler(
        self,
        transport: Transport,
        message: Message,
        error: BaseException,
        recipients: list[str],
        outcome: Outcome | None = None,
    ) -> Outcome:
        """Ask ``MAILER_ERROR_HANDLER`` about ``error``; never let it stop the run."""
        try:
            connection, action = self.handler(transport.backend, message, error)
        except Exception as handler_error:
            logger.exception("MAILER_ERROR_HANDLER %s raised", self.handler_path)
            transport.close()
            return handler_raised(error, handler_error, recipients, outcome)
        transport.replace(connection)
        return handler_said(action, message, error, recipients, outcome)


__all__ = [
    "DEFAULT_ERROR_HANDLER",
    "Engine",
    "SendCounts",
    "handle_backend_exception",
    "handle_delivery_exception",
]

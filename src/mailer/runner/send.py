"""The one way a delivery runs: a :class:`Delivery` and the engines it runs.

A ``Delivery`` holds what the delivery connections of one run (or one
``runmailer`` worker) share: the send_mail lock, the rate limiter, the
lease keeper, the gate and the recorder that write their results, the pool
they share claimed batches through, where they say the database is away; it
builds their engines and runs them (:meth:`Delivery.run`). ``send_all`` (the
API, the Tasks drain) and ``manage.py send_mail`` run :func:`deliver`: one
Delivery whose connections each run their engine once. A ``runmailer`` worker
(``mailer.runner.worker``) runs one Delivery whose connections are its slots,
each running its engine again and again until the worker stops.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Callable, Iterator

from django.db import DatabaseError, connections
from django.utils import timezone

from mailer.conf import mailers_configured, settings
from mailer.delivery.engine import FIRST_BATCH, Engine, SendCounts
from mailer.delivery.outage import Outage
from mailer.delivery.pool import Pool
from mailer.delivery.recipients import dont_send_active
from mailer.delivery.recorder import Gate, Recorder
from mailer.delivery.tally import Tally
from mailer.delivery.taper import Taper
from mailer.exceptions import DatabaseUnreachable
from mailer.queue.aliases import check_legacy_backend
from mailer.queue.enqueue import tables_required
from mailer.queue.message import Message, MessageQuerySet
from mailer.queue.workers import DeliveryRun
from mailer.runner import sharing
from mailer.runner.leases import LeaseKeeper, current, reclaim_dead
from mailer.runner.lock import LockHeld, send_lock
from mailer.runner.ratelimit import RateLimiter
from mailer.scrub import scrubbed_logger

logger = scrubbed_logger("mailer.engine")  # replies and tracebacks may quote secrets

OnResult = Callable[[SendCounts], None]
# What one connection of a Delivery does with its engine: ``slot(number, engine)``.
Slot = Callable[[int, Engine], SendCounts]


class Delivery:
    """The connections of one delivery run, or of one worker, and what they share.

    ``connections`` engines drain ``queue`` together (``share``). ``lock`` takes the
    send_mail lock for the run; ``prepare(queue)``, called once it is held and
    before anything else, may return the ``on_result`` callback to use. With
    ``give_up_after``, a run that cannot reach the database for that many seconds
    raises ``DatabaseUnreachable``; without, it waits (until ``stop``), and a
    failed start-up reclaim is only logged. ``first_claim``: what a connection
    claims before its speed is known; ``max_batch``: ``MAILER_EMAIL_MAX_BATCH``
    for the run; ``log``: where an outage of the database is told. With ``taper`` (a
    worker's), claims shrink at the queue's end while other workers drain it too, so
    that all finish together (``mailer.delivery.taper``).
    """

    def __init__(
        self,
        queue: MessageQuerySet,
        *,
        connections: int = 1,
        stop: threading.Event | None = None,
        lock: bool = False,
        prepare: Callable[[MessageQuerySet], OnResult | None] | None = None,
        on_result: OnResult | None = None,
        max_batch: int | None = None,
        first_claim: int | None = None,
        give_up_after: float | None = None,
        log: logging.Logger = logger,
        taper: bool = False,
    ) -> None:
        self.queue = queue
        self.using = queue.db
        self.connections = max(connections, 1)
        self.stop = stop or threading.Event()
        self.lock = lock
        self.prepare = prepare
        self.on_result = on_result
        self.max_batch = max_batch
        self.first_claim = first_claim
        self.give_up_after = give_up_after
        self.identity = current()
        self._log = log
        # Shared by the connections: one voice saying the database went away and came
        # back, what they may send while results wait to be written, and where one
        # that finds the queue empty takes over half of what another holds.
        self.outage = Outage(log)
        self.gate = Gate()
        self.pool = Pool()
        self.limiter: RateLimiter | None = None  # while running
        self.recorder: Recorder | None = None  # the connections' one writer, while they run
        self._tally: Tally | None = None  # the run's limits, when its connections run once
        self._dont_send: bool | None = None  # asked for the connections' first run
        self.taper = Taper(self.using, self.connections) if taper else None

    @contextlib.contextmanager
    def running(self) -> Iterator[Delivery]:
        """Hold the lock (``LockHeld`` if another run of this user does), prepare, take back
        dead and expired claims, and keep the rate limiter and the leases while the block
        runs."""
        with send_lock() if self.lock else contextlib.nullcontext():
            if self.prepare is not None:
                self.on_result = self.prepare(self.queue) or self.on_result
            self._reclaim_at_start()
            self.limiter = RateLimiter.from_settings(self.stop, self.using)
            try:
                with LeaseKeeper(self.identity.id, using=self.using, outage=self.outage):
                    yield self
            finally:
                if self.limiter is not None:
                    self.limiter.close()  # what it took of daily quotas and did not send
                    self.limiter = None

    def reclaim(self) -> None:
        """Return to the queue claims whose lease ran out, and those of dead processes here."""
        Message.objects.using(self.using).reclaim_expired()
        reclaim_dead(self.using)

    def _reclaim_at_start(self) -> None:
        if self.give_up_after is not None:
            self.reclaim()
            return
        try:
            self.reclaim()
        except DatabaseError as error:  # a worker waits for the database: it reclaims later
            self._log.warning("could not take back expired claims: %s", error)

    def engine(self, number: int) -> Engine:
        """The engine of connection ``number``, drawing on what the connections share."""
        return Engine(
            self.identity.slot(number),
            queryset=self.queue,
            stop=self.stop,
            before_send=self.limiter.acquire if self.limiter else None,
            on_result=self.on_result,
            max_batch=self.max_batch,
            share=self.connections,
            first_claim=self.first_claim,
            gate=self.gate,
            outage=self.outage,
            give_up_after=self.give_up_after,
            pool=self.pool,
            tally=self._tally,
            recorder=self.recorder,
            dont_send=self._dont_send,
            taper=self.taper,
        )

    def run(
        self, slot: Slot | None = None, *, halt: Callable[[], None] | None = None
    ) -> SendCounts:
        """Run every connection's engine, inside :meth:`running`; return what they did.

        Without ``slot``, each engine runs once, together (``send_all``): the run's
        limits count for all, and one connection runs in the caller's thread (inside
        its transaction, if any). With ``slot``, each connection is a thread calling
        ``slot(number, engine)`` (a worker's slot, until stopped). Each connection of
        several has a thread and a database connection of its own, one recorder
        writes the results of all, and the pool's thread claims each one's next batch
        while it sends its last message. ``halt()`` (default: set ``stop``) ends the others
        when one raises; then this raises what it raised, after they finished what
        they hold. When several could not reach the database, one
        ``DatabaseUnreachable`` lists all they could not record.
        """
        once = slot is None
        self._tally = Tally() if once else None
        if once and self.connections == 1:
            engine = self.engine(0)
            try:
                return engine.run()
            finally:
                engine.close()
        # One writer of the connections' results: each write covers what all were answered.
        recorder = self.recorder = Recorder(
            self.queue.model,
            self.using,
            self.identity.id,
            gate=self.gate,
            outage=self.outage,
            stop=self.stop,
        )
        # Each connection's next claim is made while it sends its last message.
        pool = self.pool = Pool(ahead=True)
        try:
            if not once:
                self._prime()
            return self._threads(slot or _once, "send" if once else "slot", halt or self.stop.set)
        finally:
            pool.close()
            self._dont_send = None
            if not recorder.abandoned:  # else the database is not asked again
                self._give_back(pool)
            recorder.close()
            self.recorder = None
            caller = connections[self.using]
            if caller.connection is not None and not caller.is_usable():
                caller.close()  # what cut the connections' database connections cut this one too

    def _prime(self) -> None:
        """Claim every connection's first batch in one statement, and ask once whether the
        don't-send list has entries, before the connections start: so each has a message
        going within the first round trip, none waiting first for a claim or for a
        database connection of its own. A database that does not answer is left to the
        connections (they wait for it, and claim for themselves)."""
        if paused() or self.stop.is_set():
            return
        owners = [self.identity.slot(n) for n in range(self.connections)]
        per = max(
            1,
            min(
                min(settings.CLAIM_BATCH_SIZE, FIRST_BATCH) // len(owners),
                self.first_claim or FIRST_BATCH,
            ),
        )
        total = per * len(owners)
        if self.max_batch is not None:
            total = max(1, min(total, self.max_batch))
        try:
            self._dont_send = dont_send_active(self.using)
            claimed = self.queue.claim(owners[0], total, lease=settings.LEASE_SECONDS)
        except DatabaseError as error:
            self._dont_send = None
            self._log.warning("could not claim the first batches: %s", error)
            return
        # Dealt out in send order: each connection's first message is among the first due.
        self.pool.prime({owner: claimed[n :: len(owners)] for n, owner in enumerate(owners)})

    def _give_back(self, pool: Pool) -> None:
        """Give back what connections that never ran were handed (``_prime``). After
        giving up on the database, nothing is: the claims come back when their lease
        ends, or at once when a run starts again on this host."""
        left = [message for owner in pool.owners() for message in pool.drop_all(owner)]
        try:
            self.queue.model.objects.using(self.using).release_each(left)
        except DatabaseError as error:  # their lease ends, or a run here takes them back
            self._log.warning("could not give back %d claim(s): %s", len(left), error)

    def _threads(self, slot: Slot, kind: str, halt: Callable[[], None]) -> SendCounts:
        counts: list[SendCounts] = [SendCounts()] * self.connections
        errors: list[BaseException] = []

        def connection(number: int) -> None:
            engine: Engine | None = None
            try:
                engine = self.engine(number)
                counts[number] = slot(number, engine)
            except BaseException as error:
                errors.append(error)
                halt()  # the others finish what they hold
            finally:
                try:
                    if engine is not None:
                        engine.close()
                finally:
                    connections.close_all()  # this thread's own database connections

        threads = [
            threading.Thread(target=connection, args=(n,), name=f"mailer-{kind}-{n}", daemon=True)
            for n in range(self.connections)
        ]
        try:
            for thread in threads:
                thread.start()
            # Joined a moment at a time, so that signal handlers run meanwhile.
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except BaseException:  # KeyboardInterrupt: the connections finish what they hold first
            halt()
            for thread in threads:
                if thread.is_alive():
                    thread.join()
            raise
        unreachable = [e for e in errors if isinstance(e, DatabaseUnreachable)]
        if unreachable and len(unreachable) == len(errors):
            raise DatabaseUnreachable.of_all(unreachable) from unreachable[0]
        if errors:
            raise next(e for e in errors if not isinstance(e, DatabaseUnreachable))
        return sum(counts, SendCounts())


def _once(number: int, engine: Engine) -> SendCounts:
    """A connection of a run: its engine drains the queue once."""
    return engine.run()


def send_all(
    queryset: MessageQuerySet | None = None,
    *,
    on_result: OnResult | None = None,
    max_batch: int | None = None,
    lock: bool = True,
    concurrency: int | None = None,
    report_as: str | None = "send_all",
) -> SendCounts:
    """Deliver all due mail once, the way ``manage.py send_mail`` does; return the counts.

    Safe to call from Celery beat, cron wrappers or tests. Takes the send_mail
    lock when ``MAILER_USE_FILE_LOCK`` is on (and ``lock`` is true); if another
    run of this user holds it, returns at once with zero counts. A lock held
    by another user's process raises ``LockHeldByOtherUser``, and an unsafe
    lock path ``UnsafeLockPath``. If the database does not answer for
    ``MAILER_RECORD_TIMEOUT`` seconds, raises ``DatabaseUnreachable`` (which
    says how many accepted messages could not be recorded). Before anything
    else, a delivery backend that would queue the mail again raises
    ``DeliveryBackendLoop`` (an ``ImproperlyConfigured``), as django-mailer's did.

    The due mail is shared over ``concurrency`` delivery connections (default
    ``MAILER_SEND_CONCURRENCY``) when there is enough of it (``mailer.runner.sharing``).
    A run that finishes is recorded as a ``DeliveryRun`` of kind ``report_as``
    for the dashboard (None: not recorded).
    """
    try:
        counts = deliver(
            queryset,
            on_result=on_result,
            max_batch=max_batch,
            lock=lock,
            concurrency=concurrency,
            report_as=report_as,
        )
    except LockHeld as held:
        logger.info("%s; not sending", held)
        return SendCounts()
    if counts is None:
        logger.info("MAILER_PAUSE_SEND is on: nothing sent")
        return SendCounts()
    return counts


def deliver(
    queryset: MessageQuerySet | None = None,
    *,
    on_result: OnResult | None = None,
    max_batch: int | None = None,
    lock: bool = True,
    prepare: Callable[[MessageQuerySet], OnResult | None] | None = None,
    concurrency: int | None = None,
    report_as: str | None = "send_all",
) -> SendCounts | None:
    """One delivery run: what ``send_all`` does, saying why it did nothing.

    Returns None, touching nothing, while ``MAILER_PAUSE_SEND`` is on; raises
    ``LockHeld`` when another run of this user holds the send_mail lock.
    ``prepare(queue)``, called once the lock is held and before any claim, may
    check the configuration and return the ``on_result`` callback to use
    (``manage.py send_mail``'s progress bar).

    As django-mailer's does, it first refuses a MAILER_EMAIL_BACKEND that would
    queue the mail again (DeliveryBackendLoop, an ImproperlyConfigured naming
    EMAIL_BACKEND and MAILER_EMAIL_BACKEND), even with nothing queued. (With
    MAILERS, each row's alias is checked when it is delivered, and mailer.E001
    reports a loop at start-up.)

    Without the mailer tables (``migrate`` not run) it raises ``TablesMissing``, which
    says so, rather than the database's "no such table".

    A run that finishes leaves a ``DeliveryRun`` of kind ``report_as``
    (``send_mail``, ``send_all``, ``task``; None: none) for the dashboard:
    unlike a worker, it is over before anyone looks.
    """
    if not mailers_configured():
        check_legacy_backend()
    if paused():
        return None
    queue = queryset if queryset is not None else Message.objects.all()
    delivery = Delivery(
        queue,
        lock=lock,
        prepare=prepare,
        on_result=on_result,
        max_batch=max_batch,
        give_up_after=settings.RECORD_TIMEOUT,
    )
    with tables_required(), delivery.running():
        started = timezone.now()
        delivery.connections = sharing.connections_for(queue, concurrency)
        counts = delivery.run()
        if report_as:
            identity = delivery.identity
            report_run(queue.db, report_as, identity.host, identity.pid, started, counts)
    return counts


def report_run(
    using: str, kind: str, host: str, pid: int, started: datetime.datetime, counts: SendCounts
) -> None:
    """Leave the run's record for the dashboard; a run that delivered is not failed for it."""
    try:
        DeliveryRun.objects.using(using).record(kind, host, pid, started_at=started, counts=counts)
    except DatabaseError as error:
        logger.warning("could not record this %s run: %s", kind, error)


def paused() -> bool:
    """``MAILER_PAUSE_SEND``: no run starts, and a worker's slots wait, while it is on."""
    return bool(settings.PAUSE_SEND)

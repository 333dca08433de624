"""The long-running worker behind ``manage.py runmailer``: the one place a worker lives.

A worker runs N delivery slots (``--concurrency``), each a thread with its
own database connection and its own delivery connections, reused across
messages. Slots claim due mail through the same queue vocabulary as
``send_mail``, so any number of workers, on any number of hosts, and cron's
``send_mail`` can run together.

Idle slots sleep until woken: by PostgreSQL ``NOTIFY`` when mail is queued,
by a poll that finds due mail (the interval adapts from
``MAILER_POLL_INTERVAL`` up to ``MAILER_EMPTY_QUEUE_SLEEP``), or when
scheduled or deferred mail falls due. On SIGTERM/SIGINT the worker stops
claiming, finishes the messages in hand, gives back what it had not started,
and returns.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from mailer.conf import settings
from mailer.delivery.engine import INITIAL_CLAIM, Engine, SendCounts
from mailer.delivery.outage import Backoff
from mailer.queue.message import Message
from mailer.queue.workers import Worker as WorkerRow
from mailer.runner import leases, send
from mailer.runner.wakeup import Listener, can_listen
from mailer.scrub import scrubbed_logger

logger = scrubbed_logger("mailer.worker")  # replies and tracebacks may quote secrets


class Waker:
    """Where idle slots wait; anyone may wake them all, and stopping wakes them for good."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._condition = threading.Condition()
        self._generation = 0

    def wake(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if woken."""
        with self._condition:
            start = self._generation
            return self._condition.wait_for(
                lambda: self._generation != start or self._stop.is_set(), timeout
            )


class MailWorker:
    """Delivers mail until stopped. ``run()`` returns the total counts."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        using: str = "default",
        listen: bool | None = None,
        stop: threading.Event | None = None,
        exit_when_idle: bool = False,
    ) -> None:
        self.concurrency = concurrency or settings.CONCURRENCY
        self.using = using
        self.listen = can_listen(using) if listen is None else listen
        self.stop = stop or threading.Event()
        self._stop_requested = False
        self.exit_when_idle = exit_when_idle
        self.identity = leases.current()
        self.waker = Waker(self.stop)
        self._look = threading.Event()  # makes the poller look at the queue now
        self.counts = SendCounts()
        self._counts_lock = threading.Lock()
        self._idle = 0
        self._idle_lock = threading.Lock()
        # The slots are the connections of one Delivery: the one way a delivery runs.
        self.delivery = send.Delivery(
            Message.objects.using(using).all(),
            connections=self.concurrency,
            stop=self.stop,
            first_claim=INITIAL_CLAIM,
            log=logger,
            taper=True,
        )
        self.outage = self.delivery.outage

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> SendCounts:
        logger.info(
            "worker %s starting with %d connection(s)%s",
            self.identity.id,
            self.concurrency,
            ", woken by NOTIFY" if self.listen else "",
        )
        with self.delivery.running():
            self._register()
            background: list[threading.Thread] = []
            if self.listen:
                listener = Listener(self.using, self._notified, self.stop)
                listener.start()
                background.append(listener)
            poller = threading.Thread(target=self._poll, name="mailer-poll", daemon=True)
            poller.start()
            background.append(poller)
            try:
                self.delivery.run(self._slot, halt=self.request_stop)
            finally:
                self.request_stop()
                for thread in background:
                    thread.join(timeout=5)
        self._unregister()
        logger.info("worker %s stopped: %s", self.identity.id, self.counts)
        return self.counts

    def _notified(self) -> None:
        """New mail was queued: wake the slots, and have the poller look again."""
        self.waker.wake()
        self._look.set()

    def request_stop(self, *_: Any) -> None:
        """Stop claiming; finish what is in hand (signal handler friendly).

        Asked once, a second time returns at once: a second signal (SIGTERM sent to the
        process group and passed on by ``runmailer``'s parent process as well) may
        interrupt the first one's handler while it holds the locks below, and waiting
        for them there would never end."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if not self.stop.is_set():
            logger.info("worker %s stopping", self.identity.id)
        self.stop.set()
        self.waker.wake()
        self._look.set()

    # -- slots -----------------------------------------------------------------------

    def _slot(self, number: int, engine: Engine) -> SendCounts:
        """One delivery slot: run ``engine`` while mail is due, sleep until woken; retry
        after failures. Returns what it did."""
        owner = engine.owner
        done = SendCounts()
        failures = outages = 0
        database = Backoff(first=0.5, most=30.0)
        while not self.stop.is_set():
            if send.paused():
                self.stop.wait(timeout=settings.EMPTY_QUEUE_SLEEP)
                continue
            try:
                counts = engine.run()
                failures = 0
                self.outage.ok(f"slot {number}")
                if engine.owes_claims:
                    # Claims it could not give back would wait, renewed, for ever.
                    self.stop.wait(database.next())
                    continue
                database.reset()
                if engine.connection_down:
                    outages += 1
                    delay = min(2.0**outages, 60.0)
                    logger.warning(
                        "slot %s: delivery server unreachable; next try in %.0f s", owner, delay
                    )
                    self.stop.wait(delay)
                    continue
                outages = 0
            except DatabaseError as error:
                self.outage.failed(f"slot {number}", error)
                close_old_connections()
                self.stop.wait(database.next())
                continue
            except Exception:
                failures += 1
                delay = min(0.5 * 2**failures, 30.0)
                logger.exception("slot %s failed; retrying in %.1f s", owner, delay)
                self.stop.wait(delay)
                continue
            self._add(counts)
            done += counts
            if sum(counts):
                continue  # there may be more: claim again at once
            if self.exit_when_idle and self._all_idle():
                self.request_stop()
                break
            with self._idle_lock:
                self._idle += 1
            self._look.set()
            # The poller and LISTEN wake idle slots; the timeout is only a safety net.
            self.waker.wait(timeout=60)
            with self._idle_lock:
                self._idle -= 1
        return done

    def _all_idle(self) -> bool:
        with self._idle_lock:
            return (
                self._idle == self.concurrency - 1
                and not Message.objects.using(self.using).due().exists()
            )

    def _add(self, counts: SendCounts) -> None:
        with self._counts_lock:
            self.counts = self.counts + counts

    # -- waking ----------------------------------------------------------------------

    def _poll(self) -> None:
        """Wake the slots when mail is due: now, or when scheduled or deferred mail falls due.

        Checks at once, then after an interval that grows from
        MAILER_POLL_INTERVAL to MAILER_EMPTY_QUEUE_SLEEP while nothing is due,
        never sleeping past the next scheduled due time. A NOTIFY (or any
        wake-up) makes it look again, since new mail may be due later.
        """
        interval = settings.POLL_INTERVAL
        last_beat = 0.0
        try:
            while not self.stop.is_set():
                try:
                    interval = self._check_queue(interval)
                    if time.monotonic() - last_beat >= settings.LEASE_SECONDS / 3:
                        self._housekeeping()
                        last_beat = time.monotonic()
                except DatabaseError as error:
                    self.outage.failed("polling the queue", error)
                    close_old_connections()
                    interval = min(max(interval, 1.0) * 2, 30.0)
                else:
                    self.outage.ok("polling the queue")
                self._look.wait(timeout=interval)
                self._look.clear()
        finally:
            connections.close_all()

    def _check_queue(self, interval: float) -> float:
        """Wake the slots if mail is due; return how long to wait before looking again."""
        with self._idle_lock:
            if self._idle == 0:
                return settings.POLL_INTERVAL  # every slot is busy and claims again by itself
        now = timezone.now()
        queue = Message.objects.using(self.using)
        if queue.due(now).exists():
            self.waker.wake()
            return settings.POLL_INTERVAL
        if self.exit_when_idle:
            with self._idle_lock:
                everyone_idle = self._idle == self.concurrency
            if everyone_idle:
                # Each slot went idle while another still had mail in hand (or another
                # worker's claims were due again for a moment): nothing is left now.
                self.request_stop()
                return settings.POLL_INTERVAL
        interval = min(interval * 1.5, settings.EMPTY_QUEUE_SLEEP)
        upcoming = queue.next_due_at(now)
        if upcoming is not None:
            interval = min(interval, max((upcoming - now).total_seconds(), 0.01))
        return interval

    def _housekeeping(self) -> None:
        """Heartbeat, and taking back claims of workers that died."""
        self._beat()
        self.delivery.reclaim()

    # -- the workers table ---------------------------------------------------------------

    def _register(self) -> None:
        try:
            self._beat()
        except DatabaseError as error:
            logger.warning("could not register worker %s: %s", self.identity.id, error)

    def _beat(self) -> None:
        WorkerRow.objects.using(self.using).beat(
            self.identity.id,
            self.identity.host,
            self.identity.pid,
            concurrency=self.concurrency,
            counts=self.counts,
        )

    def _unregister(self) -> None:
        try:
            WorkerRow.objects.using(self.using).filter(name=self.identity.id).delete()
        except DatabaseError as error:
            logger.warning("could not unregister worker %s: %s", self.identity.id, error)
        finally:
            connections.close_all()


@contextmanager
def stop_on_signals(worker: MailWorker) -> Iterator[None]:
    """Route SIGTERM and SIGINT to ``worker.request_stop`` while the block runs."""
    previous = {
        sig: signal.signal(sig, worker.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_worker(**options: Any) -> SendCounts:
    """Run a worker in this process until SIGTERM/SIGINT; return what it did."""
    worker = MailWorker(**options)
    with stop_on_signals(worker):
        return worker.run()

"""The one way a delivery runs: lock, MAILER_PAUSE_SEND, reclaim, lease keeper, then the engine.

``send_all`` (the API, the Tasks drain) and ``manage.py send_mail`` run
:func:`deliver` once; a ``runmailer`` worker (``mailer.runner.worker``) keeps
its engines running, with the same :func:`reclaim` and :func:`rate_limiter`.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable

from django.db import DatabaseError
from django.utils import timezone

from mailer.conf import mailers_configured, settings
from mailer.delivery.engine import Engine, SendCounts
from mailer.delivery.outage import Outage
from mailer.queue.aliases import check_legacy_backend
from mailer.queue.message import Message, MessageQuerySet
from mailer.queue.workers import DeliveryRun
from mailer.runner import sharing
from mailer.runner.leases import LeaseKeeper, current, reclaim_dead
from mailer.runner.lock import LockHeld, send_lock
from mailer.runner.ratelimit import RateLimiter
from mailer.scrub import scrubbed_logger

logger = scrubbed_logger("mailer.engine")  # replies and tracebacks may quote secrets


def send_all(
    queryset: MessageQuerySet | None = None,
    *,
    on_result: Callable[[SendCounts], None] | None = None,
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
    on_result: Callable[[SendCounts], None] | None = None,
    max_batch: int | None = None,
    lock: bool = True,
    prepare: Callable[[MessageQuerySet], Callable[[SendCounts], None] | None] | None = None,
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

    A run that finishes leaves a ``DeliveryRun`` of kind ``report_as``
    (``send_mail``, ``send_all``, ``task``; None: none) for the dashboard:
    unlike a worker, it is over before anyone looks.
    """
    if not mailers_configured():
        check_legacy_backend()
    if paused():
        return None
    queue = queryset if queryset is not None else Message.objects.all()
    with send_lock() if lock else contextlib.nullcontext():
        if prepare is not None:
            on_result = prepare(queue) or on_result
        identity = current()
        outage = Outage(logger)
        stop = threading.Event()
        limiter = rate_limiter(stop, queue.db)
        reclaim(queue.db)
        with LeaseKeeper(identity.id, using=queue.db, outage=outage):
            started = timezone.now()
            try:
                count = sharing.connections_for(queue, concurrency)
                if count > 1:
                    counts = sharing.drain(
                        queue,
                        identity,
                        count,
                        stop=stop,
                        limiter=limiter,
                        outage=outage,
                        on_result=on_result,
                        max_batch=max_batch,
                    )
                else:
                    engine = Engine(
                        identity.slot(0),
                        queryset=queue,
                        stop=stop,
                        before_send=limiter.acquire if limiter else None,
                        on_result=on_result,
                        max_batch=max_batch,
                        outage=outage,
                        give_up_after=settings.RECORD_TIMEOUT,
                    )
                    try:
                        counts = engine.run()
                    finally:
                        engine.close()
            finally:
                if limiter is not None:
                    limiter.close()
        if report_as:
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


def reclaim(using: str) -> None:
    """Return to the queue claims whose lease ran out, and those of dead processes here."""
    Message.objects.using(using).reclaim_expired()
    reclaim_dead(using)


def rate_limiter(stop: threading.Event, using: str) -> RateLimiter | None:
    """The shared ``MAILER_RATE_LIMIT`` bucket every engine of this process draws from."""
    return RateLimiter.from_settings(stop, using)

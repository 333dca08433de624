"""The one way a delivery runs: lock, MAILER_PAUSE_SEND, reclaim, lease keeper, then the engine."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from mailer.conf import settings
from mailer.delivery.engine import Engine, SendCounts
from mailer.delivery.outage import Outage
from mailer.queue.message import Message, MessageQuerySet
from mailer.runner.leases import LeaseKeeper, current, reclaim_dead
from mailer.runner.lock import LockHeld, send_lock
from mailer.scrub import scrubbed_logger

logger = scrubbed_logger("mailer.engine")  # replies and tracebacks may quote secrets


def send_all(
    queryset: MessageQuerySet | None = None,
    *,
    on_result: Callable[[SendCounts], None] | None = None,
    max_batch: int | None = None,
    lock: bool = True,
) -> SendCounts:
    """Deliver all due mail once, the way ``manage.py send_mail`` does; return the counts.

    Safe to call from Celery beat, cron wrappers or tests. Takes the send_mail
    lock when ``MAILER_USE_FILE_LOCK`` is on (and ``lock`` is true); if another
    run of this user holds it, returns at once with zero counts. A lock held
    by another user's process raises ``LockHeldByOtherUser``, and an unsafe
    lock path ``UnsafeLockPath``. If the database does not answer for
    ``MAILER_RECORD_TIMEOUT`` seconds, raises ``DatabaseUnreachable`` (which
    says how many accepted messages could not be recorded).
    """
    if settings.PAUSE_SEND:
        logger.info("MAILER_PAUSE_SEND is on: nothing sent")
        return SendCounts()
    queue = queryset if queryset is not None else Message.objects.all()
    try:
        with send_lock() if lock else contextlib.nullcontext():
            identity = current()
            model = queue.model.objects.using(queue.db)
            model.reclaim_expired()
            reclaim_dead(queue.db)
            outage = Outage(logger)
            with LeaseKeeper(identity.id, using=queue.db, outage=outage):
                engine = Engine(
                    identity.slot(0),
                    queryset=queue,
                    on_result=on_result,
                    max_batch=max_batch,
                    outage=outage,
                    give_up_after=settings.RECORD_TIMEOUT,
                )
                try:
                    return engine.run()
                finally:
                    engine.close()
    except LockHeld as held:
        logger.info("%s; not sending", held)
        return SendCounts()

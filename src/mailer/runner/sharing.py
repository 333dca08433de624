"""A ``send_mail`` run over several delivery connections (``MAILER_SEND_CONCURRENCY``).

One connection takes turns with its server: while the server reads and
answers a message, the run waits, and while the run reads the next row and
renders it, the server waits. Several connections, each in a thread of its
own with its own database connection, keep both busy. The run shares the
due mail out as ``runmailer``'s delivery slots do: each connection claims
its own batches (first a share of one batch, then about half a second of
work), keeps its server connection open for all of them, and at the end of
the queue takes over half of what a sibling still holds (``mailer.delivery.pool``).
Claims, leases, the rate limit and the recording of results are those of a
single connection. One recorder writes the results of all of them, so the
crash window stays that of one worker (``mailer.delivery.recorder``).
``MAILER_EMAIL_MAX_BATCH`` and ``MAILER_EMAIL_MAX_DEFERRED`` count for the run
as a whole.

A run uses one connection when there is little due mail (fewer than
``MIN_SHARE`` messages per connection), with ``MAILER_EMAIL_THROTTLE`` (a
pause after each message on the one connection), and inside a transaction
of the caller's (the claimed rows are visible to that transaction only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections

from mailer.conf import settings
from mailer.delivery.engine import Engine
from mailer.delivery.outage import Outage
from mailer.delivery.pool import Pool
from mailer.delivery.recorder import Gate, Recorder
from mailer.delivery.tally import SendCounts, Tally
from mailer.exceptions import DatabaseUnreachable
from mailer.queue.message import MessageQuerySet
from mailer.runner.leases import Identity
from mailer.runner.ratelimit import RateLimiter

MIN_SHARE = 10  # due messages that make another connection worth opening


def connections_for(queue: MessageQuerySet, wanted: int | None = None) -> int:
    """How many delivery connections a run over ``queue`` uses now (one query at most)."""
    wanted = settings.SEND_CONCURRENCY if wanted is None else wanted
    if wanted <= 1 or settings.EMAIL_THROTTLE or connections[queue.db].in_atomic_block:
        return 1
    due = queue.due()[: wanted * MIN_SHARE].count()
    return max(1, min(wanted, due // MIN_SHARE))


def drain(
    queue: MessageQuerySet,
    identity: Identity,
    count: int,
    *,
    stop: threading.Event,
    limiter: RateLimiter | None,
    outage: Outage,
    on_result: Callable[[SendCounts], None] | None = None,
    max_batch: int | None = None,
) -> SendCounts:
    """Deliver the due mail of ``queue`` over ``count`` connections; return the counts.

    Raises what a connection raised (the others stop first); when several could
    not reach the database, one ``DatabaseUnreachable`` lists all they could not record.
    """
    gate = Gate()
    recorder = Recorder(queue.model, queue.db, identity.id, gate=gate, outage=outage, stop=stop)
    shared = {
        "queryset": queue,
        "stop": stop,
        "before_send": limiter.acquire if limiter else None,
        "on_result": on_result,
        "max_batch": max_batch,
        "share": count,
        "gate": gate,
        "recorder": recorder,
        "outage": outage,
        "give_up_after": settings.RECORD_TIMEOUT,
        "pool": Pool(),
        "tally": Tally(),
    }
    engines = [Engine(identity.slot(n), **shared) for n in range(count)]  # type: ignore[arg-type]
    counts: list[SendCounts] = [SendCounts()] * count
    errors: list[BaseException] = []

    def deliver(number: int) -> None:
        engine = engines[number]
        try:
            counts[number] = engine.run()
        except BaseException as error:
            errors.append(error)
            stop.set()  # the run ends: the other connections finish what they hold
        finally:
            try:
                engine.close()
            finally:
                connections.close_all()  # this thread's own database connections

    threads = [
        threading.Thread(target=deliver, args=(n,), name=f"mailer-send-{n}", daemon=True)
        for n in range(count)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:  # KeyboardInterrupt: the connections finish what they hold first
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        raise
    finally:
        recorder.close()
        caller = connections[queue.db]
        if caller.connection is not None and not caller.is_usable():
            caller.close()  # what cut the connections' database connections cut this one too
    unreachable = [e for e in errors if isinstance(e, DatabaseUnreachable)]
    if unreachable and len(unreachable) == len(errors):
        lost = [item for error in unreachable for item in error.unrecorded]
        raise DatabaseUnreachable(unreachable[0].error, lost) from unreachable[0]
    if errors:
        raise next(e for e in errors if not isinstance(e, DatabaseUnreachable))
    return sum(counts, SendCounts())


__all__ = ["MIN_SHARE", "connections_for", "drain"]

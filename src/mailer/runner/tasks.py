"""Delivery through Django's Tasks framework: no cron, no ``runmailer``.

``send_queued_mail`` is a task that drains the queue (``engine.send_all``).
With ``MAILER_TASKS_ENQUEUE_ON_COMMIT = True``, queueing mail enqueues it once
the queueing transaction commits, on the project's default Tasks backend and
queue; so does ``manage.py retry_deferred``. Django 6 has ``django.tasks``;
Django 5.2 needs the django-tasks backport (``pip install "mailer[tasks]"``).

At most one drain waits at a time
---------------------------------
A drain delivers everything that is due when it runs, so one waiting drain
serves every message queued before it starts; a second would find nothing.
The ``TaskWakeup`` table says which drains are on their way, one row per kind:

* ``now``: a drain enqueued because mail was queued. Queueing mail enqueues
  a drain only if there is no such row (one indexed read when there is); the
  row is written first, so of two processes racing, one enqueues.
* ``next``: a drain enqueued to run later (``run_after``), when the earliest
  scheduled or deferred message falls due. A drain that finishes with such
  mail waiting makes sure one is on its way no later than that time.

A drain deletes the ``now`` row, and the ``next`` row if its time has come
(or is the time the drain was planned for), before it claims any mail. Mail
committed before the deletion is seen by its claims; mail committed after it
finds no row and enqueues the next drain. So no wake-up is lost, and at most
one ``now`` drain waits (a drain planned for later and replaced by an earlier
one still runs once, finding little).

A row older than ``STALE_AFTER`` means its task was lost (the Tasks backend
dropped it, or no worker ran it for that long): the next caller replaces it
and enqueues again; so a broken or backlogged Tasks worker costs one extra
task every ``STALE_AFTER`` at most, not one per message.

A drain that stops with mail still due (``MAILER_EMAIL_MAX_BATCH``, an
unreachable server, another run holding the ``send_mail`` lock,
``MAILER_PAUSE_SEND``) looks again ``RESUME_AFTER`` later, as a cron line
would. A Tasks backend that cannot run a task later (``supports_defer`` is
False; check ``mailer.W005``) gets no ``next`` drains: there, scheduled,
deferred and left-over mail goes out with the next drain that queued mail
starts.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from mailer.exceptions import DatabaseUnreachable
from mailer.queue.message import Message
from mailer.queue.workers import TaskWakeup
from mailer.runner.send import send_all

if TYPE_CHECKING:
    from django.tasks import Task

logger = logging.getLogger("mailer.tasks")

NOW = "now"
NEXT = "next"
# A waiting drain older than this was lost: enqueue another.
STALE_AFTER = datetime.timedelta(minutes=5)
# How soon a drain that stopped with mail still due looks again.
RESUME_AFTER = datetime.timedelta(seconds=60)


def drain(task: Task[..., dict[str, int]], using: str, planned: str | None) -> dict[str, int]:
    """Deliver all due mail, as ``manage.py send_mail`` does; return the counts.

    Then make sure a drain runs when the next scheduled or deferred message
    falls due. ``planned`` is the ISO time a drain enqueued to run later was
    planned for: it serves that wake-up even if the clock of the host running
    it is a little behind.
    """
    now = timezone.now()
    served = max(now, datetime.datetime.fromisoformat(planned)) if planned else now
    TaskWakeup.objects.using(using).filter(Q(kind=NOW) | Q(run_at__lte=served)).delete()
    try:
        counts = send_all(Message.objects.using(using).all(), report_as="task")
    except DatabaseUnreachable:
        # Like send_mail, the drain gave up on the database (after logging what it could
        # not record): no follow-up can be planned there either. Mail queued later, or
        # cron, starts the next one.
        raise
    except Exception:
        # A failed drain still makes sure another runs later; if that fails too, the
        # drain's own error is the one raised.
        with contextlib.suppress(DatabaseError):
            follow_up(task, using)
        raise
    follow_up(task, using)
    return counts._asdict()


def wake(
    task: Task[..., dict[str, int]],
    using: str = DEFAULT_DB_ALIAS,
    at: datetime.datetime | None = None,
) -> bool:
    """Make sure a drain runs at ``at`` (default: now); return whether one was enqueued.

    Nothing is enqueued when a drain that runs no later is already waiting.
    """
    now = timezone.now()
    kind, run_at = (NOW, now) if at is None or at <= now else (NEXT, at)
    drain, arguments = task, {"using": using}
    if kind == NEXT:
        if not drain.get_backend().supports_defer:
            logger.debug("the Tasks backend cannot run tasks later: no drain at %s", run_at)
            return False
        drain, arguments["planned"] = drain.using(run_after=run_at), run_at.isoformat()
    if not _reserve(using, kind, run_at, now):
        return False
    try:
        result = drain.enqueue(**arguments)
    except Exception:
        TaskWakeup.objects.using(using).filter(kind=kind, run_at=run_at).delete()
        raise
    logger.debug("enqueued drain %s (%s, runs at %s)", result.id, kind, run_at)
    return True


def wake_for(
    task: Task[..., dict[str, int]], messages: Sequence[Message], using: str = DEFAULT_DB_ALIAS
) -> None:
    """Make sure a drain runs when the first of ``messages`` falls due.

    Held messages (queued as "deferred") wait for ``retry_deferred``: they need none.
    """
    due = [message.due_at for message in messages if message.due_at is not None]
    if due:
        wake(task, using, min(due))


def follow_up(task: Task[..., dict[str, int]], using: str = DEFAULT_DB_ALIAS) -> None:
    """After a drain: make sure another runs when mail is next due."""
    queue = Message.objects.using(using)
    now = timezone.now()
    at = now + RESUME_AFTER if queue.due(now).exists() else queue.next_due_at(now)
    if at is not None:
        wake(task, using, at)


def _reserve(using: str, kind: str, run_at: datetime.datetime, now: datetime.datetime) -> bool:
    """Claim the right to enqueue the drain ``kind`` for ``run_at``.

    False if a drain of that kind is waiting that runs no later and is not
    stale; otherwise the row says ours is on its way.
    """
    rows = TaskWakeup.objects.using(using)
    stale = now - STALE_AFTER
    for _attempt in range(2):
        current = rows.filter(kind=kind)
        if current.filter(run_at__lte=run_at, run_at__gte=stale).exists():
            return False
        if current.filter(Q(run_at__gt=run_at) | Q(run_at__lt=stale)).update(run_at=run_at):
            return True
        try:
            with transaction.atomic(using=using):
                rows.create(kind=kind, run_at=run_at)
        except IntegrityError:
            continue  # another process reserved it a moment ago: look again
        return True
    return False


__all__ = ["NEXT", "NOW", "RESUME_AFTER", "STALE_AFTER", "drain", "follow_up", "wake", "wake_for"]

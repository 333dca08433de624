"""The queue's health in four bounded queries: what ``manage.py mailer_status`` reports.

Every query stays fast on millions of rows:

* messages by state, and the oldest due time: one GROUP BY over the
  ``(status, due_at)`` index of ``Message``;
* delivery attempts: one count per result over the ``(result,
  when_attempted)`` index of ``MessageLog``, for the last day only, with the
  recipients refused in them;
* workers: the most recent ``MAX_WORKERS`` rows;
* runs that deliver once and exit (``send_mail``, ``send_all()``, the Tasks
  drain): the most recent ``MAX_WORKERS`` rows, one per kind and host.

It reads only the models and the settings, and writes nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Case, Count, F, Q, Sum, Value, When
from django.utils import timezone

from mailer.conf import settings
from mailer.queue.log import MessageLog
from mailer.queue.message import Message
from mailer.queue.states import RESULT_FAILURE, RESULT_SUCCESS, count_where
from mailer.queue.workers import DeliveryRun, Worker

STATES = ("queued", "scheduled", "sending", "deferred", "held", "failed")
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
MAX_WORKERS = 20


@dataclass(frozen=True)
class Attempts:
    """Delivery attempts over a period: all of them, those that did not deliver, and the
    recipients refused (by the server or provider, each with its own reply) in them."""

    total: int
    failed: int  # deferred or failed
    refused: int = 0  # recipients, in attempts sent to others too or failed

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.total if self.total else None


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    hostname: str
    pid: int
    concurrency: int
    heartbeat_at: datetime.datetime
    alive: bool  # reported within one lease (MAILER_LEASE_SECONDS)


@dataclass(frozen=True)
class RunHealth:
    """The last run of one kind on one host: when it finished, and what the last run
    that had mail to deliver did (``delivered_at`` None: none had any yet)."""

    kind: str  # "send_mail", "send_all" or "task"
    hostname: str
    pid: int
    finished_at: datetime.datetime
    delivered_at: datetime.datetime | None
    sent: int
    deferred: int
    failed: int


@dataclass(frozen=True)
class Health:
    now: datetime.datetime
    states: dict[str, int]  # every name in STATES
    oldest_due_at: datetime.datetime | None  # when the longest-waiting due message fell due
    last_hour: Attempts
    last_day: Attempts
    workers: list[WorkerHealth]  # most recent heartbeat first
    runs: list[RunHealth]  # most recently finished first

    @property
    def oldest_due_age(self) -> float | None:
        """Seconds the longest-waiting due message has waited since it fell due."""
        if self.oldest_due_at is None:
            return None
        return max((self.now - self.oldest_due_at).total_seconds(), 0.0)

    @property
    def alive_workers(self) -> int:
        return sum(worker.alive for worker in self.workers)

    @property
    def last_run_age(self) -> float | None:
        """Seconds since the last run that delivers once and exits finished (None: none has)."""
        if not self.runs:
            return None
        return max((self.now - self.runs[0].finished_at).total_seconds(), 0.0)

    def as_json(self) -> dict[str, Any]:
        def attempts(window: Attempts) -> dict[str, Any]:
            return {
                "attempts": window.total,
                "failed": window.failed,
                "failure_rate": window.failure_rate,
                "refused_recipients": window.refused,
            }

        return {
            "now": self.now.isoformat(),
            "states": self.states,
            "oldest_due_at": self.oldest_due_at.isoformat() if self.oldest_due_at else None,
            "oldest_due_age": self.oldest_due_age,
            "last_hour": attempts(self.last_hour),
            "last_day": attempts(self.last_day),
            "alive_workers": self.alive_workers,
            "workers": [
                {
                    "name": w.name,
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "concurrency": w.concurrency,
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                    "heartbeat_age": (self.now - w.heartbeat_at).total_seconds(),
                    "alive": w.alive,
                }
                for w in self.workers
            ],
            "last_run_age": self.last_run_age,
            "runs": [
                {
                    "kind": r.kind,
                    "hostname": r.hostname,
                    "pid": r.pid,
                    "finished_at": r.finished_at.isoformat(),
                    "finished_age": (self.now - r.finished_at).total_seconds(),
                    "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
                    "sent": r.sent,
                    "deferred": r.deferred,
                    "failed": r.failed,
                }
                for r in self.runs
            ],
        }


def check(now: datetime.datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> Health:
    """The queue's health as of ``now``."""
    now = now or timezone.now()
    states, oldest_due_at = Message.objects.using(using).states(now)
    last_hour, last_day = attempts(now, using)
    return Health(
        now, states, oldest_due_at, last_hour, last_day, _workers(now, using), _runs(using)
    )


def attempts(now: datetime.datetime, using: str) -> tuple[Attempts, Attempts]:
    """Attempts in the last hour and day, and the recipients refused in them: one range
    over (result, when_attempted) per result."""
    rows = (
        MessageLog.objects.using(using)
        .filter(result__in=[RESULT_SUCCESS, RESULT_FAILURE], when_attempted__gte=now - DAY)
        .order_by()
        .values("result")
        .annotate(
            day=Count("*"),
            hour=count_where(Q(when_attempted__gte=now - HOUR)),
            refused_day=Sum("refused"),
            refused_hour=Sum(
                Case(When(when_attempted__gte=now - HOUR, then=F("refused")), default=Value(0))
            ),
        )
    )
    counts: dict[str, dict[str, Any]] = {row["result"]: dict(row) for row in rows}
    empty = {"day": 0, "hour": 0, "refused_day": 0, "refused_hour": 0}
    sent, failed = counts.get(RESULT_SUCCESS, empty), counts.get(RESULT_FAILURE, empty)

    def total(key: str) -> int:
        return int(sent[key] or 0) + int(failed[key] or 0)

    return (
        Attempts(total("hour"), int(failed["hour"] or 0), total("refused_hour")),
        Attempts(total("day"), int(failed["day"] or 0), total("refused_day")),
    )


def _workers(now: datetime.datetime, using: str) -> list[WorkerHealth]:
    alive_since = now - datetime.timedelta(seconds=settings.LEASE_SECONDS)
    rows = Worker.objects.using(using).order_by("-heartbeat_at")[:MAX_WORKERS]
    return [
        WorkerHealth(
            w.name, w.hostname, w.pid, w.concurrency, w.heartbeat_at, w.heartbeat_at >= alive_since
        )
        for w in rows
    ]


def _runs(using: str) -> list[RunHealth]:
    rows = DeliveryRun.objects.using(using).order_by("-finished_at")[:MAX_WORKERS]
    return [
        RunHealth(
            r.kind, r.hostname, r.pid, r.finished_at, r.delivered_at, r.sent, r.deferred, r.failed
        )
        for r in rows
    ]


__all__ = ["STATES", "Attempts", "Health", "RunHealth", "WorkerHealth", "attempts", "check"]

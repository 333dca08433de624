"""The numbers on the queue dashboard, and the geometry of its chart.

Every query here stays fast on a queue and a log of millions of rows:

* the two counts over the queue read nothing but an index of ``Message``
  (``status, due_at`` and ``priority, due_at, id``);
* the log is read only for the last 24 hours, through ``when_attempted``;
* the worker list and the list of delivery runs are a handful of rows each.

Six queries in all, whatever the size of the tables.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from django.db.models import Case, Count, F, IntegerField, Max, Min, Q, Sum, Value, When
from django.db.models.functions import Substr
from django.utils import timezone

from mailer.conf import settings
from mailer.priorities import PRIORITIES, PRIORITY_DEFERRED
from mailer.queue.log import MessageLog
from mailer.queue.message import Message
from mailer.queue.states import RESULT_FAILURE, RESULT_SUCCESS, count_where
from mailer.queue.workers import DeliveryRun, Worker

S = TypeVar("S", "WorkerStatus", "RunStatus")

HOURS = 24
TOP_FAILURES = 10
REPLY_CHARS = 200
MAX_WORKERS = 50
# Workers that went quiet longer ago than this are no longer listed.
WORKER_MEMORY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class StateCount:
    state: str  # the state filter's value in the message list
    label: str
    count: int


@dataclass(frozen=True)
class PriorityCount:
    priority: int
    label: str
    waiting: int  # queued, scheduled or deferred with a next attempt
    due: int  # of which due now
    oldest_due: datetime.datetime | None


@dataclass(frozen=True)
class Hour:
    start: datetime.datetime
    sent: int
    failed: int
    refused: int = 0  # recipients refused by the server or provider in this hour
    refused_last_hour: int = 0  # of those, the ones within the hour before "now"


@dataclass(frozen=True)
class FailureReply:
    code: int | None
    exception: str
    reply: str
    count: int
    last_seen: datetime.datetime


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    hostname: str
    pid: int
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    alive: bool
    concurrency: int
    sent: int
    deferred: int
    failed: int


@dataclass(frozen=True)
class RunStatus:
    """The last run of one kind on one host (``send_mail`` from cron, ``send_all()``, a task)."""

    kind: str
    hostname: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    delivered_at: datetime.datetime | None  # the last run that had mail to deliver
    sent: int
    deferred: int
    failed: int

    @property
    def seconds(self) -> float:
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


@dataclass
class Dashboard:
    now: datetime.datetime
    states: list[StateCount]
    priorities: list[PriorityCount]
    hours: list[Hour]
    failures: list[FailureReply]
    workers: list[WorkerStatus]
    runs: list[RunStatus] = field(default_factory=list)
    # Totals of the rows above, for the tiles.
    oldest_due: datetime.datetime | None = field(init=False)
    due: int = field(init=False)
    sent_last_day: int = field(init=False)
    failed_last_day: int = field(init=False)
    refused_last_day: int = field(init=False)  # recipients the server or provider refused
    refused_last_hour: int = field(init=False)  # of those, the ones in the last 60 minutes

    def __post_init__(self) -> None:
        due = [p.oldest_due for p in self.priorities if p.oldest_due is not None]
        self.oldest_due = min(due) if due else None
        self.due = sum(p.due for p in self.priorities)
        self.sent_last_day = sum(h.sent for h in self.hours)
        self.failed_last_day = sum(h.failed for h in self.hours)
        self.refused_last_day = sum(h.refused for h in self.hours)
        self.refused_last_hour = sum(h.refused_last_hour for h in self.hours)

    @property
    def oldest_due_age(self) -> datetime.timedelta | None:
        """How long the message that has been due longest has waited (None: nothing due)."""
        return None if self.oldest_due is None else self.now - self.oldest_due


def gather(now: datetime.datetime | None = None, using: str = "default") -> Dashboard:
    """Everything the dashboard shows, as of ``now``."""
    now = now or timezone.now()
    return Dashboard(
        now=now,
        states=state_counts(now, using),
        priorities=priority_counts(now, using),
        hours=hourly(now, using),
        failures=common_failures(now, using),
        workers=workers(now, using),
        runs=runs(now, using),
    )


def state_counts(now: datetime.datetime, using: str = "default") -> list[StateCount]:
    """Messages in each state, the way the message list's state filter names them."""
    counts, _ = Message.objects.using(using).states(now)
    return [StateCount(state, state, count) for state, count in counts.items()]


def priority_counts(now: datetime.datetime, using: str = "default") -> list[PriorityCount]:
    """Waiting messages by priority: how many, how many are due, since when the oldest is due.

    Only messages with a next attempt have a ``due_at``, so this is one GROUP
    BY over the ``(priority, due_at, id)`` index.
    """
    rows = (
        Message.objects.using(using)
        .filter(due_at__isnull=False)
        .order_by()
        .values("priority")
        .annotate(waiting=Count("*"), due=count_where(Q(due_at__lte=now)), first=Min("due_at"))
    )
    by_priority: dict[int, dict[str, Any]] = {row["priority"]: dict(row) for row in rows}
    counts = []
    for priority, label in PRIORITIES:
        if priority == PRIORITY_DEFERRED and priority not in by_priority:
            continue  # only django-mailer's rows carry it; shown when there are some
        row = by_priority.get(priority, {"waiting": 0, "due": 0, "first": None})
        first = row["first"]
        counts.append(
            PriorityCount(
                priority,
                label,
                int(row["waiting"]),
                int(row["due"] or 0),
                first if first is not None and first <= now else None,
            )
        )
    return counts


def hour_floor(when: datetime.datetime) -> datetime.datetime:
    return when.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)


def hourly(now: datetime.datetime, using: str = "default") -> list[Hour]:
    """Sent and failed attempts, and refused recipients, in each of the last 24 hours, the
    current one included.

    Hours are whole UTC hours. Reads only the log rows of that window, through
    the ``when_attempted`` index, and puts each in its hour with a CASE of
    plain comparisons (a date function per row is slow on SQLite). "Failed"
    counts every failed attempt, the ones deferred to be tried again included.
    """
    first = hour_floor(now) - datetime.timedelta(hours=HOURS - 1)
    starts = [first + datetime.timedelta(hours=offset) for offset in range(HOURS)]
    hour = Case(
        *(
            When(when_attempted__lt=start, then=Value(index - 1))
            for index, start in enumerate(starts)
            if index
        ),
        default=Value(HOURS - 1),
        output_field=IntegerField(),
    )
    rows = (
        MessageLog.objects.using(using)
        .filter(when_attempted__gte=first, result__in=[RESULT_SUCCESS, RESULT_FAILURE])
        .annotate(hour=hour)
        .order_by()
        .values("hour", "result")
        .annotate(
            count=Count("*"),
            refused_sum=Sum("refused"),
            recent=Sum(
                Case(
                    When(when_attempted__gte=now - datetime.timedelta(hours=1), then=F("refused")),
                    default=Value(0),
                )
            ),
        )
    )
    counts = {(row["hour"], row["result"]): row["count"] for row in rows}
    refused: dict[int, list[int]] = {}
    for row in rows:
        both = refused.setdefault(row["hour"], [0, 0])
        both[0] += int(row["refused_sum"] or 0)
        both[1] += int(row["recent"] or 0)
    return [
        Hour(
            start,
            counts.get((index, RESULT_SUCCESS), 0),
            counts.get((index, RESULT_FAILURE), 0),
            *refused.get(index, [0, 0]),
        )
        for index, start in enumerate(starts)
    ]


def common_failures(now: datetime.datetime, using: str = "default") -> list[FailureReply]:
    """The most frequent replies to failed attempts in the last 24 hours.

    Replies are compared on their first 200 characters; the ``(result,
    when_attempted)`` index finds the rows.
    """
    rows = (
        MessageLog.objects.using(using)
        .filter(result=RESULT_FAILURE, when_attempted__gte=now - datetime.timedelta(hours=HOURS))
        .order_by()
        .values("smtp_code", "exception", reply=Substr("smtp_reply", 1, REPLY_CHARS))
        .annotate(count=Count("*"), last_seen=Max("when_attempted"))
        .order_by("-count", "-last_seen")[:TOP_FAILURES]
    )
    return [
        FailureReply(
            row["smtp_code"], row["exception"], row["reply"] or "", row["count"], row["last_seen"]
        )
        for row in rows
    ]


def workers(now: datetime.datetime, using: str = "default") -> list[WorkerStatus]:
    """Workers heard from in the last day, latest first; alive if within one lease."""
    alive_since = now - datetime.timedelta(seconds=settings.LEASE_SECONDS)
    return [
        _snapshot(WorkerStatus, w, alive=w.heartbeat_at >= alive_since)
        for w in _last_day(Worker, "heartbeat_at", now, using)
    ]


def runs(now: datetime.datetime, using: str = "default") -> list[RunStatus]:
    """Runs that delivered once and exited in the last day, latest first (one row per host)."""
    return [_snapshot(RunStatus, r) for r in _last_day(DeliveryRun, "finished_at", now, using)]


def _last_day(
    model: type[Worker | DeliveryRun], latest: str, now: datetime.datetime, using: str
) -> Iterable[Any]:
    """The reporters whose ``latest`` time is within the last day, latest first."""
    return (
        model._default_manager.using(using)
        .filter(**{f"{latest}__gte": now - WORKER_MEMORY})
        .order_by(f"-{latest}")[:MAX_WORKERS]
    )


def _snapshot(status: type[S], row: Any, **computed: Any) -> S:
    """A ``status`` dataclass of ``row``'s attributes of the same names, and ``computed``."""
    copied = {f.name: getattr(row, f.name) for f in fields(status) if f.name not in computed}
    return status(**copied, **computed)


# -- The chart -------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # "sent" or "failed"
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    """An SVG bar chart of :func:`hourly`, laid out here so the template only draws it."""

    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_right: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    description: str


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... that is at least ``value``."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def chart(hours: list[Hour], width: int = 760, height: int = 220) -> Chart:
    """Two bars per hour (sent, failed), a y axis with a few round ticks, a label every 3 hours."""
    left, right, top, bottom = 48, width - 8, 10, height - 26
    top_value = nice_ceiling(max([h.sent for h in hours] + [h.failed for h in hours] + [1]))
    plot_height = bottom - top
    slot = (right - left) / max(len(hours), 1)
    bar_width = max(slot * 0.38, 1.0)

    def y_of(value: int) -> float:
        return bottom - plot_height * value / top_value

    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    for index, hour in enumerate(hours):
        x = left + index * slot + slot * 0.1
        local = timezone.localtime(hour.start)
        span = f"{local:%H:%M}–{local + datetime.timedelta(hours=1):%H:%M}"
        for offset, kind, value in ((0.0, "sent", hour.sent), (bar_width, "failed", hour.failed)):
            if value:
                y = y_of(value)
                bars.append(
                    Bar(
                        round(x + offset, 1),
                        round(y, 1),
                        round(bar_width, 1),
                        round(bottom - y, 1),
                        kind,
                        f"{span}: {value} {kind}",
                    )
                )
        if index % 3 == 0:
            x_ticks.append(Tick(round(left + (index + 0.5) * slot, 1), f"{local:%H:%M}"))
    y_ticks = [
        Tick(round(y_of(value), 1), f"{value:,}")
        for value in sorted({0, top_value // 2, top_value})
    ]
    sent = sum(h.sent for h in hours)
    failed = sum(h.failed for h in hours)
    return Chart(
        width,
        height,
        left,
        bottom,
        right,
        bars,
        y_ticks,
        x_ticks,
        f"Attempts per hour over the last {len(hours)} hours: {sent} sent, {failed} failed.",
    )

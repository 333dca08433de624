"""Running workers as they last reported themselves, the last delivery runs of each kind and
host, and pending Tasks wake-ups."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.conf import settings

if TYPE_CHECKING:  # generic in the type stubs only
    _Count = models.PositiveBigIntegerField[int, int]


def _delivery_counts() -> tuple[_Count, _Count, _Count]:
    """The sent, deferred and failed counters that a worker or a run reports.

    Made where they are declared, so that each model keeps its own field order.
    """
    sent, deferred, failed = (
        models.PositiveBigIntegerField(label, default=0)
        for label in (_("sent"), _("deferred"), _("failed"))
    )
    return sent, deferred, failed


class _Reporter(models.Model):
    """A process that reports its deliveries under its ``name``."""

    name: models.CharField[str, str]

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class WorkerQuerySet(models.QuerySet["Worker"]):
    def beat(
        self, name: str, hostname: str, pid: int, *, concurrency: int, counts: Sequence[int]
    ) -> None:
        """Record that worker ``name`` is alive, with what it has done so far."""
        sent, deferred, failed = counts
        values = {
            "heartbeat_at": timezone.now(),
            "concurrency": concurrency,
            "sent": sent,
            "deferred": deferred,
            "failed": failed,
        }
        if not self.filter(name=name).update(**values):
            self.create(name=name, hostname=hostname, pid=pid, **values)

    def alive(self, within: float | None = None) -> WorkerQuerySet:
        """Workers that reported within ``within`` seconds (default: one lease)."""
        seconds = within if within is not None else settings.LEASE_SECONDS
        return self.filter(heartbeat_at__gte=timezone.now() - datetime.timedelta(seconds=seconds))

    def connections(self) -> int:
        """The delivery connections of the workers alive, all together."""
        total: int | None = self.alive().aggregate(total=models.Sum("concurrency"))["total"]
        return total or 0


class Worker(_Reporter):
    """A running delivery process, as it last reported itself."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    hostname = models.CharField(_("host"), max_length=200)
    pid = models.PositiveIntegerField(_("pid"))
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    concurrency = models.PositiveSmallIntegerField(_("connections"), default=1)
    sent, deferred, failed = _delivery_counts()

    objects = WorkerQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")


class DeliveryRunQuerySet(models.QuerySet["DeliveryRun"]):
    def record(
        self,
        kind: str,
        hostname: str,
        pid: int,
        *,
        started_at: datetime.datetime,
        counts: Sequence[int],
        finished_at: datetime.datetime | None = None,
    ) -> None:
        """Record that a run of ``kind`` on ``hostname`` finished, and what it delivered.

        One row per kind and host, whatever the number of runs (cron may start
        one a minute): the last run's times, and the counts of the last run
        that had anything to deliver.
        """
        values: dict[str, Any] = {
            "pid": pid,
            "started_at": started_at,
            "finished_at": finished_at or timezone.now(),
        }
        if any(counts):
            sent, deferred, failed = counts
            values.update(
                delivered_at=values["finished_at"], sent=sent, deferred=deferred, failed=failed
            )
        name = f"{kind}@{hostname}"
        if self.filter(name=name).update(**values):
            return
        try:
            with transaction.atomic(using=self.db):
                self.create(name=name, kind=kind, hostname=hostname, **values)
        except IntegrityError:  # another run on this host created it meanwhile
            self.filter(name=name).update(**values)


class DeliveryRun(_Reporter):
    """Runs that deliver once and exit (``send_mail``, ``send_all()``, the Tasks drain).

    ``runmailer`` workers report themselves in ``Worker`` while they run; a run
    from cron is over before anyone looks, so it leaves this row behind: one
    per kind of run and host.
    """

    name = models.CharField(_("name"), max_length=250, unique=True)
    kind = models.CharField(_("kind"), max_length=40)
    hostname = models.CharField(_("host"), max_length=200)
    pid = models.PositiveIntegerField(_("pid"))
    started_at = models.DateTimeField(_("last run started at"))
    finished_at = models.DateTimeField(_("last run finished at"))
    delivered_at = models.DateTimeField(
        _("last delivery at"),
        null=True,
        blank=True,
        help_text=_("When the last run that had mail to deliver finished; the counts are its."),
    )
    sent, deferred, failed = _delivery_counts()

    objects = DeliveryRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("delivery run")
        verbose_name_plural = _("delivery runs")


class TaskWakeup(models.Model):
    """A queue-draining Django task that was enqueued and has not started yet.

    One row per kind at most: ``"now"``, the drain enqueued when mail was
    queued; ``"next"``, the one that runs when scheduled or deferred mail
    falls due. ``mailer.tasks`` enqueues a drain only when no row says one is
    on its way, and the drain deletes the rows it serves as it starts.
    """

    kind = models.CharField(_("kind"), max_length=10, primary_key=True)
    run_at = models.DateTimeField(_("runs at"))

    class Meta:
        verbose_name = _("task wake-up")
        verbose_name_plural = _("task wake-ups")

    def __str__(self) -> str:
        return f"{self.kind} at {self.run_at.isoformat(timespec='seconds')}"

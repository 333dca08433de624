"""The queue's messages: ``Message``, and the queue's vocabulary on :class:`MessageQuerySet`.

``due()``, ``claim()``, ``record()``, ``deferred()``... are the words the rest of
the package speaks; the claim (``claim.py``), recording (``record.py``) and
enqueueing (``enqueue.py``) are written beside this module, and every line of
locking SQL is in ``mailer/queue/``. A message's life (see ``docs/guarantees``)::

    queued (due now, or scheduled for later) -> claimed -> sent (row deleted, logged)
                                                        -> deferred (next attempt later)
                                                        -> failed (kept, with the reply)
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.conf import settings
from mailer.message import codec
from mailer.message.summary import document_summary
from mailer.priorities import (
    PRIORITIES,
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    parse_priority,
)
from mailer.queue import retry
from mailer.queue.claim import claim_rows
from mailer.queue.enqueue import collector_paused, enqueue, tables_required
from mailer.queue.log import MessageLog
from mailer.queue.outcome import Outcome
from mailer.queue.record import record_results
from mailer.queue.rows import TolerantJSONField
from mailer.queue.states import DUE_STATUSES, RESULT_FAILURE, Status, state_counts
from mailer.scrub import scrub

logger = logging.getLogger("mailer.queue")


# -- Messages --------------------------------------------------------------------


class MessageQuerySet(models.QuerySet["Message"]):
    """Queue vocabulary. The engine speaks only these words; none of it is SQL there."""

    # The contract's names (django-mailer's MessageManager).

    def high_priority(self) -> MessageQuerySet:
        """Messages waiting to be sent at high priority."""
        return self.non_deferred().filter(priority=PRIORITY_HIGH)

    def medium_priority(self) -> MessageQuerySet:
        return self.non_deferred().filter(priority=PRIORITY_MEDIUM)

    def low_priority(self) -> MessageQuerySet:
        return self.non_deferred().filter(priority=PRIORITY_LOW)

    def non_deferred(self) -> MessageQuerySet:
        """Messages that will be sent without anyone retrying them: queued or being sent."""
        return self.filter(status__in=(Status.QUEUED, Status.CLAIMED))

    def deferred(self) -> MessageQuerySet:
        """What django-mailer calls deferred: held, deferred and failed messages.

        Everything that was not delivered and is not waiting for its first
        attempt, so that an alert on ``deferred().count()`` sees failed mail too.
        ``retry_deferred`` requeues the held and deferred ones (``awaiting_retry``).
        """
        return self.filter(status__in=(Status.DEFERRED, Status.FAILED))

    def awaiting_retry(self) -> MessageQuerySet:
        """Held and deferred messages: those ``retry_deferred`` makes due now."""
        return self.filter(status=Status.DEFERRED)

    def retry_deferred(
        self,
        new_priority: int | str | None = None,
        *,
        max_age: datetime.timedelta | None = None,
        limit: int | None = None,
    ) -> int:
        """Make deferred messages due now; return how many were requeued.

        Keeps each message's priority unless ``new_priority`` is given.
        Messages that have used up ``MAILER_EMAIL_MAX_RETRIES`` are failed
        instead of requeued. ``max_age`` leaves out messages queued longer
        ago; ``limit`` requeues at most that many, oldest first.
        """
        now = timezone.now()
        candidates = self.awaiting_retry()
        if max_age is not None:
            candidates = candidates.filter(when_added__gte=now - max_age)
        max_retries = settings.EMAIL_MAX_RETRIES
        if max_retries is not None:
            reason = f"gave up after MAILER_EMAIL_MAX_RETRIES={max_retries} retries"
            self.filter(pk__in=candidates.filter(retry_count__gt=max_retries)).give_up(reason)
            candidates = candidates.filter(retry_count__lte=max_retries)
        if limit is not None:
            ids = list(candidates.order_by("when_added", "pk").values_list("pk", flat=True)[:limit])
            candidates = self.model.objects.filter(pk__in=ids)
        changes: dict[str, Any] = {"status": Status.QUEUED, "due_at": now}
        if new_priority is not None:
            priority = parse_priority(new_priority)
            if priority != PRIORITY_DEFERRED:
                changes["priority"] = priority
        return candidates.update(**changes)

    def give_up(self, reason: str) -> int:
        """Fail these messages with ``reason``, logging each; return how many.

        One UPDATE and one INSERT in a short transaction that writes first (so
        SQLite never has to upgrade a read lock).
        """
        now = timezone.now()
        rows = list(self.exclude(status=Status.FAILED))
        if not rows:
            return 0
        with transaction.atomic(using=self.db):
            self.model.objects.using(self.db).filter(pk__in=[r.pk for r in rows]).update(
                status=Status.FAILED,
                due_at=None,
                claimed_by="",
                lease_expires_at=None,
                last_reply=reason,
            )
            MessageLog.objects.using(self.db).bulk_create(
                MessageLog.about(row, RESULT_FAILURE, reason, when_attempted=now) for row in rows
            )
        return len(rows)

    # Queue states beyond the contract.

    def by_provider_id(self, provider_id: str) -> MessageQuerySet:
        """Messages still in the queue (partly sent, deferred or failed for some recipient)
        that an email service provider gave the id ``provider_id``. A message sent to
        everyone has left the queue: ``MessageLog.objects.by_provider_id`` finds its log."""
        logs = MessageLog.objects.using(self.db).by_provider_id(provider_id)
        return self.filter(pk__in=logs.values("queue_id"))

    def queued(self) -> MessageQuerySet:
        return self.filter(status=Status.QUEUED)

    def scheduled(self, now: datetime.datetime | None = None) -> MessageQuerySet:
        """Queued messages whose time has not come (``send_at`` in the future)."""
        return self.queued().filter(due_at__gt=now or timezone.now())

    def claimed(self) -> MessageQuerySet:
        return self.filter(status=Status.CLAIMED)

    def failed(self) -> MessageQuerySet:
        return self.filter(status=Status.FAILED)

    def held(self) -> MessageQuerySet:
        """Deferred messages with no next attempt: they wait for ``retry_deferred``."""
        return self.awaiting_retry().filter(due_at__isnull=True)

    def due(self, now: datetime.datetime | None = None) -> MessageQuerySet:
        """Messages a worker may claim now: queued or deferred, and their time has come."""
        return self.filter(due_at__lte=now or timezone.now(), status__in=DUE_STATUSES)

    def next_due_at(self, now: datetime.datetime | None = None) -> datetime.datetime | None:
        """When the next scheduled or deferred message falls due (None: nothing waiting)."""
        later = self.filter(status__in=DUE_STATUSES, due_at__gt=now or timezone.now())
        found = later.order_by("due_at").values_list("due_at", flat=True).first()
        return found

    def states(
        self, now: datetime.datetime | None = None
    ) -> tuple[dict[str, int], datetime.datetime | None]:
        """How many messages are in each state (by ``Message.state``'s names), and since
        when the longest-waiting due message has been due (None: nothing is due).

        One GROUP BY over the ``(status, due_at)`` index.
        """
        return state_counts(self, now or timezone.now())

    def in_send_order(self) -> MessageQuerySet:
        """Priority first, then the time they became due, then queue order."""
        return self.order_by("priority", "due_at", "pk")

    def owned_by(self, owner: str) -> MessageQuerySet:
        """Claims held by ``owner`` (a worker id, or one of its delivery slots)."""
        return self.claimed().filter(Q(claimed_by=owner) | Q(claimed_by__startswith=owner + "/"))

    # Claims and leases. Each is one short statement or transaction.

    def claim(
        self,
        owner: str,
        limit: int,
        *,
        lease: float,
        now: datetime.datetime | None = None,
    ) -> list[Message]:
        """Take up to ``limit`` due messages for ``owner``, in send order; return them.

        Concurrent workers never wait for each other and never get the same
        row: PostgreSQL claims with one ``UPDATE ... WHERE id IN (SELECT ...
        FOR UPDATE SKIP LOCKED) RETURNING id``; MariaDB picks rows with
        ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks them in the same short
        transaction; SQLite claims with a single ``UPDATE ... RETURNING``, which
        its write lock makes atomic. Only the rows claimed by this call are
        returned. The claim is committed before this returns, so no
        transaction is open while the messages are delivered.

        The claimed rows are then read in one ``SELECT``, their ``message_data``
        only where it is within ``MAILER_MAX_MESSAGE_SIZE`` (see ``mailer.queue.rows``):
        a bigger row comes with ``message_data`` None and its length in
        ``stored_size``, and is failed without being read.
        """
        return claim_rows(self, owner, limit, lease=lease, now=now)

    def renew_leases(self, owner: str, lease: float) -> int:
        """Extend every claim ``owner`` holds; return how many it still holds."""
        until = timezone.now() + datetime.timedelta(seconds=lease)
        return self.owned_by(owner).update(lease_expires_at=until)

    def release(self, owner: str, ids: Iterable[int] | None = None) -> int:
        """Give back claims ``owner`` holds (all, or those in ``ids``) without an attempt."""
        claims = self.owned_by(owner)
        if ids is not None:
            claims = claims.filter(pk__in=list(ids))
        return claims.update(status=Status.QUEUED, claimed_by="", lease_expires_at=None)

    def release_each(self, messages: Iterable[Message], owner: str = "") -> int:
        """Give back ``messages`` without an attempt, each under the claim it came with
        (a message a sibling connection took is still its claimer's; ``owner`` if none)."""
        claims: dict[str, list[int]] = {}
        for message in messages:
            claims.setdefault(message.claimed_by or owner, []).append(message.pk)
        return sum(self.release(claimer, ids) for claimer, ids in claims.items())

    def still_claimed(self, claims: Mapping[int, tuple[str, int]]) -> set[int]:
        """Which claims (id -> (claimed_by, retry_count) when claimed) are held still,
        unrecorded: asked before a failed write, maybe committed, is tried again."""
        rows = self.claimed().filter(pk__in=list(claims))
        return {
            pk
            for pk, claimer, retries in rows.values_list("pk", "claimed_by", "retry_count")
            if claims[pk] == (claimer, retries)
        }

    def release_strays(self, owner: str, keep: Iterable[int]) -> int:
        """Give back what ``owner`` holds apart from ``keep``: claims it does not know
        it has, from a claim whose COMMIT reached the database while the answer was lost
        (the connection cut mid-commit). Its lease keeper would renew them for ever."""
        claims = self.filter(status=Status.CLAIMED, claimed_by=owner).exclude(pk__in=list(keep))
        return claims.update(status=Status.QUEUED, claimed_by="", lease_expires_at=None)

    def postpone(self, owner: str, ids: Iterable[int], until: datetime.datetime) -> int:
        """Give back claims ``owner`` holds, due again at ``until``: no attempt was made
        (a delivery quota is used up), so no attempt is counted and no log row written."""
        claims = self.owned_by(owner).filter(pk__in=list(ids))
        return claims.update(
            status=Status.QUEUED, claimed_by="", lease_expires_at=None, due_at=until
        )

    def expired_claims(self, now: datetime.datetime | None = None) -> MessageQuerySet:
        return self.claimed().filter(lease_expires_at__lt=now or timezone.now())

    def reclaim_expired(self, now: datetime.datetime | None = None) -> int:
        """Return claims whose lease ran out (their worker died or hung) to the queue."""
        return self.expired_claims(now).update(
            status=Status.QUEUED, claimed_by="", lease_expires_at=None
        )

    def claim_owners(self, host: str) -> set[str]:
        """Worker ids on ``host`` that hold claims (used to take back a dead process's)."""
        owners = self.claimed().filter(claimed_by__startswith=host + ":")
        return {o.split("/", 1)[0] for o in owners.values_list("claimed_by", flat=True).distinct()}

    # Results.

    def record(
        self, results: Sequence[tuple[Message, Outcome]], *, worker: str | Mapping[int, str] = ""
    ) -> None:
        """Write the outcome of a batch of attempts in one short transaction.

        Sent (and don't-send) messages are deleted and logged; transient
        failures are deferred to their next attempt, or failed when retries or
        age are exhausted; permanent failures are failed. One DELETE, one
        UPDATE and one INSERT for the whole batch; on PostgreSQL, when nothing
        is deferred or failed, a single statement deleting and logging. ``worker``
        names the delivery connection logged with each result (or maps ids to it).
        """
        record_results(self, results, worker=worker)

    # Enqueueing.

    def enqueue(
        self,
        emails: Sequence[EmailMessage],
        *,
        priority: int | str | None = None,
        mailer: str = "",
        send_at: datetime.datetime | None = None,
        expires_at: datetime.datetime | None = None,
    ) -> list[Message]:
        """Validate, filter and store ``emails``; return the rows queued.

        Every message is checked before anything is written, so one bad
        message queues none of them. Recipients on the don't-send list are
        removed (one query for the whole batch); a message left without
        recipients is logged as "don't send" and not queued. A message whose
        idempotency key (``X-Mailer-Idempotency-Key``) was used within
        ``MAILER_IDEMPOTENCY_WINDOW``, or by an earlier message of the call, is
        logged as a duplicate and not queued (see :ref:`idempotency-keys`).
        All rows go in with one INSERT per ``MAILER_MESSAGES_BATCH_SIZE``,
        inside the caller's transaction.
        """
        with tables_required(), collector_paused(len(emails) > 1):
            return enqueue(self, emails, priority, mailer, send_at, expires_at)


class Message(models.Model):
    """An email waiting in the queue, being sent, deferred, or failed.

    Sent messages leave the queue: their record is the ``MessageLog``.
    """

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    message_data = models.TextField(_("message data"))
    when_added = models.DateTimeField(_("queued at"), default=timezone.now)
    priority = models.PositiveSmallIntegerField(
        _("priority"), choices=PRIORITIES, default=PRIORITY_MEDIUM
    )
    retry_count = models.IntegerField(_("failed attempts"), default=0)

    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    due_at = models.DateTimeField(
        _("next attempt"),
        null=True,
        blank=True,
        help_text=_(
            "Not sent before this time. Empty for a held message: retry_deferred frees it."
        ),
    )
    expires_at = models.DateTimeField(
        _("expires at"),
        null=True,
        blank=True,
        help_text=_("Failed rather than sent after this time."),
    )
    claimed_by = models.CharField(_("claimed by"), max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    last_code = models.PositiveSmallIntegerField(_("last SMTP code"), null=True, blank=True)
    last_reply = models.TextField(_("last reply"), blank=True, default="")
    mailer = models.CharField(
        _("mailer"),
        max_length=100,
        blank=True,
        default="",
        help_text=_(
            "MAILERS alias that delivers this message; empty: the default delivery backend."
        ),
    )
    recipient_results = TolerantJSONField(
        _("recipient results"),
        default=dict,
        blank=True,
        help_text=_("Final result per recipient so far: accepted ones are never sent again."),
    )
    idempotency_key = models.CharField(
        _("idempotency key"),
        max_length=255,
        blank=True,
        default="",
        help_text=_(
            "Given when it was queued: no other message with this key is queued "
            "within MAILER_IDEMPOTENCY_WINDOW."
        ),
    )

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        indexes = [
            # "What is next": claims scan this in send order.
            models.Index(fields=["priority", "due_at", "id"], name="mailer_msg_next_idx"),
            # Counts by state, expired leases, the admin's filters.
            models.Index(fields=["status", "due_at"], name="mailer_msg_status_idx"),
        ]
        permissions = [
            ("view_message_body", _("Can view the bodies of queued and logged mail")),
            ("send_message", _("Can retry, requeue and cancel mail")),
        ]

    def __str__(self) -> str:
        summary = document_summary(self.message_data)
        if not summary:
            return f"Message #{self.pk}"
        return f'"{summary["subject"]}" to {", ".join(summary["to"])}'

    # The contract's properties and methods.

    @property
    def email(self) -> EmailMessage | None:
        """The ``EmailMessage`` this row stores (None if its data cannot be decoded)."""
        try:
            return codec.decode(self.message_data)
        except ValueError:
            return None

    @email.setter
    def email(self, value: EmailMessage) -> None:
        doc = codec.to_document(value)
        if settings.ASSIGN_MESSAGE_ID:
            codec.assign_message_id(doc)
        self.message_data = codec.dumps(doc)

    @property
    def to_addresses(self) -> list[str]:
        return list(document_summary(self.message_data).get("to", []))

    @property
    def subject(self) -> str:
        return str(document_summary(self.message_data).get("subject", ""))

    def defer(self, reply: str = "") -> None:
        """Count a failed attempt and schedule the next one (or fail, if retries are spent).

        Error handlers written for django-mailer call this; it saves at once.
        """
        now = timezone.now()
        self.retry_count += 1
        self.claimed_by = ""
        self.lease_expires_at = None
        if reply:
            self.last_reply = scrub(reply)
        reason = retry.exhausted(self.retry_count, self.when_added, now)
        if reason:
            self.status = Status.FAILED
            self.due_at = None
            self.last_reply = f"{self.last_reply} ({reason})".strip()
        else:
            self.status = Status.DEFERRED
            self.due_at = retry.next_attempt_at(self.retry_count, now)
        self._deferred_by_handler = True
        if self.pk is not None:
            self.save(
                update_fields=[
                    "status",
                    "due_at",
                    "retry_count",
                    "claimed_by",
                    "lease_expires_at",
                    "last_reply",
                ]
            )

    # Our own.

    @property
    def state(self) -> str:
        """queued, scheduled, sending, deferred, held or failed."""
        if self.status == Status.QUEUED and self.due_at and self.due_at > timezone.now():
            return "scheduled"
        if self.status == Status.DEFERRED and self.due_at is None:
            return "held"
        return str(Status(self.status).label)

    @property
    def attempts(self) -> int:
        """Attempts made so far (all of them failed, or the message would be gone)."""
        return self.retry_count

    @property
    def stored_message_id(self) -> str | None:
        return document_summary(self.message_data).get("message_id")

    @property
    def summary(self) -> dict[str, Any]:
        return document_summary(self.message_data)

    @property
    def stored_size(self) -> int:
        """Characters of stored data. ``claim()`` has the database count them, and leaves
        ``message_data`` None rather than read a row over ``MAILER_MAX_MESSAGE_SIZE``."""
        counted: int | None = self.__dict__.get("_stored_size")
        return len(self.message_data or "") if counted is None else counted

    @stored_size.setter
    def stored_size(self, value: int) -> None:
        self.__dict__["_stored_size"] = value

"""The queue: messages waiting to be delivered, the log of every attempt, the don't-send list.

The queue's vocabulary lives on :class:`MessageQuerySet` (``due()``,
``claim()``, ``record()``, ``deferred()``...), and so does every line of
locking SQL. A message's life (see ``docs/guarantees``)::

    queued (due now, or scheduled for later) -> claimed -> sent (row deleted, logged)
                                                        -> deferred (next attempt later)
                                                        -> failed (kept, with the reply)
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import IntegrityError, connections, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import idempotency, retry, signals, storage
from .batching import delete_in_batches
from .conf import settings
from .exceptions import MessageTooLarge
from .idempotency import IdempotencyKey
from .outcome import Outcome, Verdict
from .priorities import (
    PRIORITIES,
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MAPPING,
    PRIORITY_MEDIUM,
    parse_priority,
)
from .recording import delete_ids, insert_logs
from .rows import TolerantJSONField, bounded, bytes_over, take_bounded
from .scrub import scrub
from .validation import (
    CONTROL_HEADERS,
    IDEMPOTENCY_KEY_HEADER,
    PRIORITY_HEADER,
    SEND_AT_HEADER,
    check_idempotency_key,
    validate,
)

__all__ = [
    "PRIORITIES",
    "PRIORITY_DEFERRED",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_MAPPING",
    "PRIORITY_MEDIUM",
    "RESULT_CODES",
    "RESULT_DONT_SEND",
    "RESULT_FAILURE",
    "RESULT_SUCCESS",
    "DeliveryRun",
    "DontSendEntry",
    "IdempotencyKey",
    "Message",
    "MessageLog",
    "Status",
    "TaskWakeup",
]

logger = logging.getLogger("mailer.queue")

RESULT_SUCCESS = "1"
RESULT_DONT_SEND = "2"
RESULT_FAILURE = "3"
RESULT_CODES = [
    (RESULT_SUCCESS, _("success")),
    (RESULT_DONT_SEND, _("don't send")),
    (RESULT_FAILURE, _("failure")),
]


class Status(models.TextChoices):
    QUEUED = "queued", _("queued")
    CLAIMED = "claimed", _("sending")
    DEFERRED = "deferred", _("deferred")
    FAILED = "failed", _("failed")


DUE_STATUSES = (Status.QUEUED, Status.DEFERRED)


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
        """Messages that could not be delivered yet and wait for a retry."""
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
        candidates = self.deferred()
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
        return self.deferred().filter(due_at__isnull=True)

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
        now = now or timezone.now()
        rows = (
            self.order_by()
            .values("status")
            .annotate(
                total=models.Count("*"),
                later=count_where(Q(due_at__gt=now)),
                unset=count_where(Q(due_at__isnull=True)),
                first=models.Min("due_at"),
            )
        )
        found: dict[str, dict[str, Any]] = {row["status"]: dict(row) for row in rows}

        def get(status: str, key: str) -> int:
            return int(found.get(status, {}).get(key) or 0)

        counts = {
            "queued": get(Status.QUEUED, "total") - get(Status.QUEUED, "later"),
            "scheduled": get(Status.QUEUED, "later"),
            "sending": get(Status.CLAIMED, "total"),
            "deferred": get(Status.DEFERRED, "total") - get(Status.DEFERRED, "unset"),
            "held": get(Status.DEFERRED, "unset"),
            "failed": get(Status.FAILED, "total"),
        }
        firsts = [found.get(status, {}).get("first") for status in DUE_STATUSES]
        due = [first for first in firsts if first is not None and first <= now]
        return counts, min(due) if due else None

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
        only where it is within ``MAILER_MAX_MESSAGE_SIZE`` (see ``mailer.rows``):
        a bigger row comes with ``message_data`` None and its length in
        ``stored_size``, and is failed without being read.
        """
        now = now or timezone.now()
        claim = {
            "status": Status.CLAIMED,
            "claimed_by": owner,
            "lease_expires_at": now + datetime.timedelta(seconds=lease),
        }
        connection = connections[self.db]
        due = self.due(now).in_send_order()
        mine = self.model.objects.using(self.db)
        if connection.vendor == "postgresql":
            ids = self._claim_returning(due, limit, claim, " FOR UPDATE SKIP LOCKED")
        elif connection.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35):
            # One UPDATE holds SQLite's write lock for its whole duration.
            ids = self._claim_returning(due, limit, claim, "")
        elif connection.features.has_select_for_update:
            skip = connection.features.has_select_for_update_skip_locked
            with transaction.atomic(using=self.db):
                ids = list(
                    due.select_for_update(skip_locked=skip).values_list("pk", flat=True)[:limit]
                )
                if ids:
                    mine.filter(pk__in=ids).update(**claim)
        else:  # SQLite before 3.35: no RETURNING; mark, then read back this claim's rows
            token = f"{owner}#{uuid.uuid4().hex[:8]}"
            picked = models.Subquery(due.values("pk")[:limit])
            mine.filter(pk__in=picked, status__in=DUE_STATUSES).update(
                **{**claim, "claimed_by": token}
            )
            ids = list(mine.filter(claimed_by=token).values_list("pk", flat=True))
            mine.filter(pk__in=ids).update(claimed_by=owner)
        if not ids:
            return []
        # Rows over MAILER_MAX_MESSAGE_SIZE come without their data (rows.bounded).
        claimed = list(bounded(mine.filter(pk__in=ids).in_send_order(), settings.MAX_MESSAGE_SIZE))
        take_bounded(claimed)
        return claimed

    def _claim_returning(
        self, due: MessageQuerySet, limit: int, claim: dict[str, Any], lock: str
    ) -> list[int]:
        """Claim in one ``UPDATE ... RETURNING`` statement; return the ids claimed."""
        connection = connections[self.db]
        quote = connection.ops.quote_name
        meta = self.model._meta
        picked_sql, picked_params = due.values("pk")[:limit].query.get_compiler(self.db).as_sql()
        columns = {field.name: str(field.column) for field in meta.concrete_fields}
        assignments = ", ".join(f"{quote(columns[name])} = %s" for name in claim)
        pk = quote(columns["id"])
        sql = (
            f"UPDATE {quote(meta.db_table)} SET {assignments} "
            f"WHERE {pk} IN ({picked_sql}{lock}) RETURNING {pk}"
        )
        fields = {field.name: field for field in meta.concrete_fields}
        values = [fields[name].get_db_prep_save(v, connection) for name, v in claim.items()]
        with connection.cursor() as cursor:
            cursor.execute(sql, [*values, *picked_params])
            return [row[0] for row in cursor.fetchall()]

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

    def record(self, results: Sequence[tuple[Message, Outcome]], *, worker: str = "") -> None:
        """Write the outcome of a batch of attempts in one short transaction.

        Sent (and don't-send) messages are deleted and logged; transient
        failures are deferred to their next attempt, or failed when retries or
        age are exhausted; permanent failures are failed. One DELETE, one
        UPDATE and one INSERT for the whole batch; on PostgreSQL, when nothing
        is deferred or failed, a single statement deleting and logging.
        """
        if not results:
            return
        now = timezone.now()
        log_data = settings.EMAIL_LOG_MESSAGE_DATA
        done: list[int] = []
        changed: list[Message] = []
        logs: list[MessageLog] = []
        signalled: list[tuple[str, Message, Outcome, MessageLog | None]] = []
        for message, outcome in results:
            attempt = message.retry_count + 1
            if getattr(message, "_deferred_by_handler", False):
                # A django-mailer style error handler called message.defer(): saved already.
                attempt = message.retry_count
                final = "deferred" if message.status == Status.DEFERRED else "failed"
            else:
                final = _apply_outcome(message, outcome, now)
                if final == "done":
                    done.append(message.pk)
                else:
                    changed.append(message)
            result = {
                Verdict.SENT: RESULT_SUCCESS,
                Verdict.SKIPPED: RESULT_DONT_SEND,
            }.get(outcome.verdict, RESULT_FAILURE)
            log = None
            if not getattr(message, "_logged_attempt", False):  # else an error handler logged it
                log = MessageLog.about(
                    message,
                    result,
                    _log_text(outcome, final, message),
                    attempt=attempt,
                    keep_data=log_data and final != "deferred",
                    message_id=outcome.message_id,
                    when_attempted=now,
                    recipients=[[r.address, *r.as_json()] for r in outcome.recipients],
                    exception=outcome.exception,
                    smtp_code=outcome.reply.code,
                    smtp_reply=outcome.reply.text,
                    worker=worker,
                )
                logs.append(log)
            sent = final == "done" and outcome.verdict is Verdict.SENT
            signalled.append(("sent" if sent else final, message, outcome, log))
        db = self.db
        if logs and not changed and connections[db].vendor == "postgresql":
            # One statement, atomic by itself: results come a few at a time, and a
            # round trip (and a transaction's) is most of what writing them costs.
            insert_logs(logs, db, delete=(self.model, done) if done else None)
            signals.recorded_on_commit(self.model, signalled, db)
            return
        with transaction.atomic(using=db):
            delete_ids(self.model, done, db)
            if changed:
                self.model.objects.using(db).bulk_update(
                    changed,
                    [
                        "status",
                        "due_at",
                        "retry_count",
                        "last_code",
                        "last_reply",
                        "recipient_results",
                        "claimed_by",
                        "lease_expires_at",
                    ],
                )
            insert_logs(logs, db, max_params=_max_query_params(connections[db]))
            signals.recorded_on_commit(self.model, signalled, db)

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
        with _collector_paused(len(emails) > 1):
            return self._enqueue(emails, priority, mailer, send_at, expires_at)

    def _enqueue(
        self,
        emails: Sequence[EmailMessage],
        priority: int | str | None,
        mailer: str,
        send_at: datetime.datetime | None,
        expires_at: datetime.datetime | None,
    ) -> list[Message]:
        now = timezone.now()
        default_priority = (
            settings.DEFAULT_PRIORITY if priority is None else parse_priority(priority)
        )
        send_at, expires_at = schedule(send_at, expires_at)
        prepared: list[tuple[EmailMessage, dict[str, Any], list[str]]] = []
        for email in emails:
            recipients = validate(email)
            doc = storage.to_document(email)
            prepared.append((email, doc, recipients))

        blocked = DontSendEntry.objects.using(self.db).blocked(
            address for _, _, recipients in prepared for address in recipients
        )
        assign_id = settings.ASSIGN_MESSAGE_ID
        max_size = settings.MAX_MESSAGE_SIZE
        packet = _max_packet(self.db)
        rows: list[Message] = []
        skipped: list[MessageLog] = []
        keyed = False
        for _email, doc, recipients in prepared:
            controls = _pop_control_headers(doc)
            key = controls.get("idempotency_key", "")
            row_priority = parse_priority(controls.get("priority"), default_priority)
            row_send_at, row_expires = send_at, expires_at
            if "send_at" in controls or "expires_at" in controls:
                row_send_at, row_expires = schedule(
                    controls.get("send_at") or send_at, controls.get("expires_at") or expires_at
                )
            if assign_id:
                storage.assign_message_id(doc)
            if blocked:
                for field in ("to", "cc", "bcc"):
                    doc[field] = [a for a in doc[field] if _addr_key(a) not in blocked]
                if not (doc["to"] or doc["cc"] or doc["bcc"]):
                    skipped.append(_dont_send_log(doc, now, row_priority, recipients))
                    continue
            elif not recipients:
                continue
            data = storage.dumps(doc)
            _check_size(data, max_size)
            if packet is not None and _statement_size(data) > packet - _STATEMENT_OVERHEAD:
                raise MessageTooLarge(
                    f"The message is {_statement_size(data)} bytes once stored and escaped; with "
                    f"the INSERT around it, that is over the database's max_allowed_packet "
                    f"({packet}). Raise max_allowed_packet on the server or lower "
                    "MAILER_MAX_MESSAGE_SIZE."
                )
            held = row_priority == PRIORITY_DEFERRED
            keyed = keyed or bool(key)
            rows.append(
                _new_message(
                    self.model,
                    message_data=data,
                    when_added=now,
                    priority=PRIORITY_MEDIUM if held else row_priority,
                    status=Status.DEFERRED if held else Status.QUEUED,
                    due_at=None if held else (row_send_at or now),
                    expires_at=row_expires,
                    mailer=mailer,
                    idempotency_key=key,
                )
            )
        # One statement is atomic by itself; rows and don't-send log rows go together, and
        # so do keys and the rows that claim them.
        together: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if keyed:
            together = transaction.atomic(using=self.db, savepoint=False)
        elif rows and skipped:
            together = transaction.atomic(using=self.db)
        with together:
            if keyed:
                rows = idempotency.first_uses(rows, self.db, now)
            self._store(rows, skipped, packet)
        return rows

    def _store(self, rows: list[Message], skipped: list[MessageLog], packet: int | None) -> None:
        if rows:
            from .postgres import notify_channel

            channel = notify_channel(self.db)
            if packet is not None:
                # One INSERT must fit in a packet: batch by size, all in one transaction.
                with transaction.atomic(using=self.db):
                    for batch in _batches_within(rows, packet):
                        insert_rows(batch, self.db, settings.MESSAGES_BATCH_SIZE)
            else:
                insert_rows(rows, self.db, settings.MESSAGES_BATCH_SIZE, notify=channel)
            signals.queued_on_commit(self.model, rows, self.db)
        if skipped:
            MessageLog.objects.using(self.db).bulk_create(skipped)


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch is prepared.

    Preparing thousands of messages allocates many objects that live until the
    INSERT; the collector's repeated passes over them cost as much as the work
    itself (40% of send_mass_mail of 5,000 here). Nothing made here is cyclic;
    the collector runs again as soon as the batch is stored.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def insert_rows(
    rows: Sequence[models.Model], using: str, batch_size: int | None = None, notify: str = ""
) -> None:
    """INSERT new ``rows`` of one model: one multi-row statement per batch; set their ids.

    A batch is ``batch_size`` rows (all if None), fewer if the database takes
    fewer parameters. Values every row shares are sent once: a default as a
    constant, anything else (the queueing time) as one parameter on PostgreSQL.
    Only values that vary are bound per row. ``bulk_create`` binds every column
    of every row, and on PostgreSQL sends them as arrays whose text it escapes
    in Python; with client-side binding the driver's cost grows with the number
    of placeholders: that made it most of the cost of ``send_mass_mail``.

    ``notify`` (PostgreSQL): a channel to NOTIFY from the same statement, so a
    single queued message costs one round trip, not two.
    """
    if not rows:
        return
    connection = connections[using]
    meta = rows[0]._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    assert pk is not None
    fields = [f for f in meta.concrete_fields if f is not pk]
    sample = rows[0]
    postgres = connection.vendor == "postgresql"
    varying: list[models.Field[Any, Any]] = []
    shared: list[models.Field[Any, Any]] = []
    columns: list[tuple[str, models.Field[Any, Any] | None]] = []  # SQL, or None: bound per row
    for field in fields:
        value = getattr(sample, field.attname)
        same = all(getattr(row, field.attname) == value for row in rows)
        constant = _constant_sql(field, value) if same else None
        if constant is not None:
            columns.append((constant, None))
        elif same and postgres:
            shared.append(field)
            columns.append((f"CAST(%s AS {field.db_type(connection)})", None))
        else:
            varying.append(field)
            columns.append(("", field))
    per_batch = len(rows)
    limit = _max_query_params(connection)
    if limit and varying:
        per_batch = max(1, min(per_batch, (limit - len(shared)) // len(varying)))
    if batch_size:
        per_batch = min(per_batch, batch_size)
    prepare = {field.attname: _preparer(field, connection) for field in varying + shared}
    names = ", ".join(quote(str(f.column)) for f in fields)
    tail = (
        f" RETURNING {quote(str(pk.column))}"
        if connection.features.can_return_rows_from_bulk_insert
        else ""
    )
    if notify and postgres:
        # Identical notifications in one transaction reach listeners once.
        tail += f", pg_notify('{notify}', '')"
    if postgres:
        # INSERT ... SELECT <shared once> FROM (VALUES <varying per row>) AS v(c0, c1...)
        select = []
        for sql, per_row in columns:
            if per_row is None:
                select.append(sql)
            else:
                kind = per_row.db_type(connection)
                select.append(f"CAST(v.c{varying.index(per_row)} AS {kind})")
        aliases = ", ".join(f"c{n}" for n in range(len(varying)))
        row_sql = "(" + ", ".join(["%s"] * len(varying)) + ")"
        head = f"INSERT INTO {quote(meta.db_table)} ({names}) SELECT {', '.join(select)} FROM "
        if varying:
            head += "(VALUES "
            end = f") AS v({aliases}){tail}"
        else:  # every row alike: that many copies of the one row
            row_sql, end = "", tail
        once = [prepare[f.attname](getattr(sample, f.attname)) for f in shared]
    else:
        row_sql = (
            "(" + ", ".join(sql if per_row is None else "%s" for sql, per_row in columns) + ")"
        )
        head = f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES "
        end = tail
        once = []
    # One statement is atomic by itself; several go in a transaction.
    batches = len(rows) > per_batch
    atomic = (
        transaction.atomic(using=using, savepoint=False) if batches else contextlib.nullcontext()
    )
    with atomic, connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params = [prepare[f.attname](getattr(row, f.attname)) for row in batch for f in varying]
            values = (
                ", ".join([row_sql] * len(batch))
                if row_sql
                else f"generate_series(1, {len(batch)})"
            )
            cursor.execute(head + values + end, [*once, *params])
            ids = [r[0] for r in cursor.fetchall()] if tail else [None] * len(batch)
            for row, row_id in zip(batch, ids, strict=True):
                row.pk = row_id
                row._state.adding = False
                row._state.db = using


def _preparer(field: models.Field[Any, Any], connection: Any) -> Any:
    """``field.get_db_prep_save`` for one INSERT, remembering results for repeated values.

    Every new row shares a few values (the queueing time, a due time): adapting
    a datetime for the database costs more than anything else in a row.
    """
    prep = field.get_db_prep_save
    if not isinstance(field, models.DateTimeField):
        return functools.partial(prep, connection=connection)
    seen: dict[Any, Any] = {}

    def prepared(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            seen[value] = result = prep(value, connection)
            return result

    return prepared


def _max_query_params(connection: Any) -> int | None:
    """How many parameters one statement may have on ``connection`` (None: no limit)."""
    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        try:
            return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        except AttributeError:  # Python before 3.11
            pass
    limit = connection.features.max_query_params
    return int(limit) if limit else None


def _constant_sql(field: models.Field[Any, Any], value: Any) -> str | None:
    """SQL for a value every new row shares (None, a number, '' or an empty JSON value),
    or None if it must be bound."""
    if isinstance(field, models.JSONField):
        if value in ({}, []):
            return "'{}'" if value == {} else "'[]'"
        return None
    if value is None:
        return "NULL"
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, int):
        return str(value)
    return "''" if value == "" else None


def _new_message(model: type[Message], **values: Any) -> Message:
    """A new, unsaved Message: the values given, defaults for the rest.

    Positional arguments take Django's fast path through ``Model.__init__``;
    queueing builds one of these per message.
    """
    args = [
        values[name] if name in values else default() for name, default in _field_defaults(model)
    ]
    construct: Any = model  # positional fields, which django-stubs cannot type
    new: Message = construct(*args)
    return new


@functools.cache
def _field_defaults(model: type[models.Model]) -> list[tuple[str, Any]]:
    """(attname, function giving its default) for each concrete field, in order."""
    plan: list[tuple[str, Any]] = []
    for field in model._meta.concrete_fields:
        default = (lambda: None) if field.primary_key else field.get_default
        plan.append((field.attname, default))
    return plan


def count_where(condition: Q) -> models.Sum:
    """How many rows meet ``condition``, as an aggregate (portable: no FILTER clause)."""
    one = models.Case(models.When(condition, then=models.Value(1)), default=models.Value(0))
    return models.Sum(one, output_field=models.IntegerField())


def _apply_outcome(message: Message, outcome: Outcome, now: datetime.datetime) -> str:
    """Update ``message`` in memory for ``outcome``; return "done", "deferred" or "failed".

    Stored results of any other shape than an object (a malformed row, failed for
    it) are replaced by this attempt's.
    """
    stored = message.recipient_results
    results = dict(stored) if isinstance(stored, dict) else {}
    for r in outcome.recipients:
        if r.verdict is not Verdict.TRANSIENT:
            results[r.address] = r.as_json()
    message.recipient_results = results
    message.claimed_by = ""
    message.lease_expires_at = None
    message.last_code = outcome.reply.code
    message.last_reply = outcome.reply.text[:2000]
    if outcome.verdict in (Verdict.SENT, Verdict.SKIPPED):
        return "done"
    message.retry_count += 1
    if outcome.verdict is Verdict.PERMANENT:
        message.status = Status.FAILED
        message.due_at = None
        return "failed"
    reason = retry.exhausted(message.retry_count, message.when_added, now)
    if reason:
        message.status = Status.FAILED
        message.due_at = None
        message.last_reply = f"{message.last_reply} ({reason})"[:2000]
        return "failed"
    message.status = Status.DEFERRED
    message.due_at = retry.next_attempt_at(message.retry_count, now)
    return "deferred"


def _log_text(outcome: Outcome, final: str, message: Message) -> str:
    """The contract's free-text ``log_message`` for an attempt."""
    if outcome.verdict is Verdict.SENT:
        refused = [r for r in outcome.recipients if r.verdict is Verdict.PERMANENT]
        return "; ".join(f"refused {r.address}: {r.reply}" for r in refused)
    if outcome.verdict is Verdict.SKIPPED:
        return "every recipient is on the don't-send list"
    if final == "deferred" and message.due_at is not None:
        return f"deferred until {message.due_at.isoformat(timespec='seconds')}: {outcome.reply}"
    return message.last_reply if final == "failed" else str(outcome.reply)


def _pop_control_headers(doc: dict[str, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = doc["headers"]
    found = [name for name in headers if name.lower() in CONTROL_HEADERS]
    controls: dict[str, Any] = {}
    for name in found:
        value = headers.pop(name)
        key = name.lower()
        if key == PRIORITY_HEADER.lower():
            controls["priority"] = value
        elif key == IDEMPOTENCY_KEY_HEADER.lower():
            controls["idempotency_key"] = check_idempotency_key(value, name)
        else:
            controls["send_at" if key == SEND_AT_HEADER.lower() else "expires_at"] = _parse_when(
                name, value
            )
    return controls


def schedule(
    send_at: Any, expires_at: Any
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """``send_at`` and ``expires_at`` as the database stores them; InvalidSchedule if wrong.

    With ``USE_TZ`` a naive datetime is taken to be in the current time zone,
    as Django's ORM does; without it, an aware one is converted to local time.
    A message that would expire before it could be sent is refused.
    """
    from django.conf import settings as django_settings

    from .exceptions import InvalidSchedule

    def stored(name: str, value: Any) -> datetime.datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime.datetime):
            raise InvalidSchedule(f"{name} must be a datetime, not {value!r}.")
        if django_settings.USE_TZ:
            return timezone.make_aware(value) if timezone.is_naive(value) else value
        return timezone.make_naive(value) if timezone.is_aware(value) else value

    start, end = stored("send_at", send_at), stored("expires_at", expires_at)
    if end is not None and end <= (start or timezone.now()):
        when = "its send_at" if start else "now"
        raise InvalidSchedule(
            f"expires_at ({end.isoformat()}) is not after {when}: it could never be sent."
        )
    return start, end


def _parse_when(name: str, value: Any) -> datetime.datetime:
    from .exceptions import InvalidHeader

    if isinstance(value, dict) and "$datetime" in value:
        value = value["$datetime"]
    try:
        when = (
            value
            if isinstance(value, datetime.datetime)
            else datetime.datetime.fromisoformat(value)
        )
    except (TypeError, ValueError):
        raise InvalidHeader(f"{name} must be an ISO 8601 date and time, not {value!r}.") from None
    return when


def _check_size(data: str, limit: int | None) -> None:
    size = bytes_over(data, limit)
    if size is not None:
        raise MessageTooLarge(
            f"The message is {size} bytes once stored, over MAILER_MAX_MESSAGE_SIZE ({limit})."
        )


# Room for the rest of an INSERT statement: SQL text and the other columns of a row.
_STATEMENT_OVERHEAD = 64 * 1024


def _max_packet(using: str) -> int | None:
    """MySQL/MariaDB's max_allowed_packet; None for other databases.

    A statement longer than the packet limit makes the server drop the
    connection ("server has gone away") in the middle of the caller's request.
    """
    connection = connections[using]
    if connection.vendor != "mysql":
        return None
    cached: int | None = getattr(connection, "_mailer_max_packet", None)
    if cached is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            row = cursor.fetchone()
        cached = int(row[0])
        connection._mailer_max_packet = cached  # type: ignore[attr-defined]
    return cached


def _statement_size(data: str) -> int:
    """Bytes ``data`` takes in an SQL statement: UTF-8, with quotes and backslashes escaped."""
    return len(data.encode("utf-8", "surrogatepass")) + data.count('"') + data.count("\\")


def _batches_within(rows: list[Message], packet: int) -> Iterable[list[Message]]:
    """``rows`` in batches whose INSERT fits in ``packet`` bytes."""
    batch: list[Message] = []
    size = 0
    for row in rows:
        row_size = _statement_size(row.message_data) + 1024
        if batch and size + row_size > packet - _STATEMENT_OVERHEAD:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def _addr_key(address: str) -> str:
    """The lowercased addr-spec of ``address`` ("Name <A@B>" -> "a@b")."""
    if "<" in address:
        from email.utils import parseaddr

        address = parseaddr(address)[1] or address
    return address.strip().lower()


def _dont_send_log(
    doc: dict[str, Any], now: datetime.datetime, priority: int, recipients: list[str]
) -> MessageLog:
    msgid = next((v for k, v in doc["headers"].items() if k.lower() == "message-id"), None)
    return MessageLog(
        message_data=None,
        message_id=msgid,
        when_added=now,
        priority=priority,
        when_attempted=now,
        result=RESULT_DONT_SEND,
        log_message="every recipient is on the don't-send list",
        recipients=[[a, "skipped", None, "on the don't-send list"] for a in recipients],
        subject_line=storage.summarize(doc).get("subject", "")[: storage.SUBJECT_KEPT],
    )


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
        summary = storage.document_summary(self.message_data)
        if not summary:
            return f"Message #{self.pk}"
        return f'"{summary["subject"]}" to {", ".join(summary["to"])}'

    # The contract's properties and methods.

    @property
    def email(self) -> EmailMessage | None:
        """The ``EmailMessage`` this row stores (None if its data cannot be decoded)."""
        try:
            return storage.decode(self.message_data)
        except ValueError:
            return None

    @email.setter
    def email(self, value: EmailMessage) -> None:
        doc = storage.to_document(value)
        if settings.ASSIGN_MESSAGE_ID:
            storage.assign_message_id(doc)
        self.message_data = storage.dumps(doc)

    @property
    def to_addresses(self) -> list[str]:
        return list(storage.document_summary(self.message_data).get("to", []))

    @property
    def subject(self) -> str:
        return str(storage.document_summary(self.message_data).get("subject", ""))

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
        return storage.document_summary(self.message_data).get("message_id")

    @property
    def summary(self) -> dict[str, Any]:
        return storage.document_summary(self.message_data)

    @property
    def stored_size(self) -> int:
        """Characters of stored data. ``claim()`` has the database count them, and leaves
        ``message_data`` None rather than read a row over ``MAILER_MAX_MESSAGE_SIZE``."""
        counted: int | None = self.__dict__.get("_stored_size")
        return len(self.message_data or "") if counted is None else counted

    @stored_size.setter
    def stored_size(self, value: int) -> None:
        self.__dict__["_stored_size"] = value


# -- The log --------------------------------------------------------------------


class MessageLogQuerySet(models.QuerySet["MessageLog"]):
    def log(
        self, message: Message, result_code: str, log_message: str = "", **fields: Any
    ) -> MessageLog:
        """Record an attempt at ``message`` (the contract's signature); texts are scrubbed."""
        handled = getattr(message, "_deferred_by_handler", False)  # defer() counted it already
        if isinstance(fields.get("smtp_reply"), str):
            fields["smtp_reply"] = scrub(fields["smtp_reply"])
        entry = self.model.about(
            message,
            result_code,
            scrub(log_message) if isinstance(log_message, str) else log_message,
            attempt=message.retry_count + (0 if handled else 1),
            **fields,
        )
        entry.save(using=self.db)
        message._logged_attempt = True  # type: ignore[attr-defined]
        return entry

    def purge_old_entries(
        self, days: int, result_codes: Sequence[str] | None = None, *, batch_size: int = 5000
    ) -> int:
        """Delete log rows older than ``days`` days with the given results, in batches.

        Returns the number deleted. Defaults to successful deliveries only.
        """
        if result_codes is None:
            result_codes = [RESULT_SUCCESS]
        limit = timezone.now() - datetime.timedelta(days=days)
        old = self.filter(result__in=list(result_codes), when_attempted__lt=limit)
        return delete_in_batches(old, batch_size)

    def for_message(self, message: Message) -> MessageLogQuerySet:
        return self.filter(queue_id=message.pk).order_by("when_attempted", "pk")


class MessageLog(models.Model):
    """One attempt to deliver a message (or a decision not to)."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    # NULL-able text, as in django-mailer's schema: NULL means "not kept".
    message_data = models.TextField(_("message data"), null=True)  # noqa: DJ001
    message_id = models.TextField(_("Message-ID"), editable=False, null=True)  # noqa: DJ001
    when_added = models.DateTimeField(_("queued at"))
    priority = models.PositiveSmallIntegerField(_("priority"), choices=PRIORITIES)
    when_attempted = models.DateTimeField(_("attempted at"), default=timezone.now)
    result = models.CharField(_("result"), max_length=1, choices=RESULT_CODES)
    log_message = models.TextField(_("log message"))

    queue_id = models.BigIntegerField(_("queue id"), null=True, blank=True, db_index=True)
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    recipients = models.JSONField(
        _("recipients"),
        default=list,
        blank=True,
        help_text=_(
            "[address, result, SMTP code, reply] for each recipient this attempt concerned."
        ),
    )
    exception = models.CharField(_("exception"), max_length=200, blank=True, default="")
    smtp_code = models.PositiveSmallIntegerField(_("SMTP code"), null=True, blank=True)
    smtp_reply = models.TextField(_("reply"), blank=True, default="")
    mailer = models.CharField(_("mailer"), max_length=100, blank=True, default="")
    worker = models.CharField(_("worker"), max_length=200, blank=True, default="")
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, blank=True, default="")
    subject_line = models.TextField(
        _("subject"),
        blank=True,
        default="",
        help_text=_("The message's subject, kept even when the message itself is not."),
    )

    objects = MessageLogQuerySet.as_manager()

    class Meta:
        verbose_name = _("message log")
        verbose_name_plural = _("message logs")
        indexes = [
            models.Index(fields=["result", "when_attempted"], name="mailer_log_purge_idx"),
            models.Index(fields=["when_attempted"], name="mailer_log_time_idx"),
        ]

    def __str__(self) -> str:
        subject = self.subject
        when = f"{self.when_attempted:%Y-%m-%d %H:%M}"
        if subject is not None:
            to = self.to_addresses  # None when the message was not kept
            return f'On {when}, "{subject}" to {", ".join(to)}' if to else f'On {when}, "{subject}"'
        return f'On {when}, "{self.message_id}"'

    @classmethod
    def about(
        cls,
        message: Message,
        result: str,
        log_message: str = "",
        *,
        attempt: int | None = None,
        keep_data: bool | None = None,
        message_id: str | None = None,
        **fields: Any,
    ) -> MessageLog:
        """A new (unsaved) log row about ``message``: its identity, priority and mailer.

        Keeps the whole message as ``MAILER_EMAIL_LOG_MESSAGE_DATA`` says (unless
        ``keep_data`` says otherwise); ``attempt`` defaults to the attempts made.
        """
        if keep_data is None:
            keep_data = settings.EMAIL_LOG_MESSAGE_DATA
        return cls(
            message_data=message.message_data if keep_data else None,
            message_id=message_id or message.stored_message_id,
            when_added=message.when_added,
            priority=message.priority,
            result=result,
            log_message=log_message,
            queue_id=message.pk,
            attempt=message.retry_count if attempt is None else attempt,
            mailer=message.mailer,
            idempotency_key=message.idempotency_key,
            **{"subject_line": storage.stored_subject(message.message_data), **fields},
        )

    @property
    def email(self) -> EmailMessage | None:
        if not self.message_data:
            return None
        try:
            return storage.decode(self.message_data)
        except ValueError:
            return None

    @property
    def to_addresses(self) -> list[str] | None:
        summary = storage.document_summary(self.message_data)
        return list(summary["to"]) if summary else None

    @property
    def subject(self) -> str | None:
        """The message's subject; None if the row keeps neither it nor the message."""
        if self.subject_line:
            return self.subject_line
        summary = storage.document_summary(self.message_data)
        return str(summary["subject"]) if summary else None


# -- The don't-send list ---------------------------------------------------------


class DontSendEntryQuerySet(models.QuerySet["DontSendEntry"]):
    def has_address(self, address: str) -> bool:
        """Is ``address`` on the don't-send list (case-insensitively)?"""
        return self.filter(to_address__iexact=_addr_key(address)).exists()

    def blocked(self, addresses: Iterable[str]) -> set[str]:
        """The lowercased addresses among ``addresses`` that are on the list: one query.

        Written out, with one array parameter on PostgreSQL: the ORM's ``__in``
        prepares each of thousands of addresses on its own.
        """
        wanted = list({_addr_key(a) for a in addresses if a})
        if not wanted or _empty_until.get(self.db, 0.0) > time.monotonic():
            return set()
        connection = connections[self.db]
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        column = f"LOWER({quote('to_address')})"
        params: list[Any]
        if connection.vendor == "postgresql":
            condition, params = f"{column} = ANY(%s)", [wanted]
        else:
            condition, params = f"{column} IN ({', '.join(['%s'] * len(wanted))})", wanted
        # A NULL row says the list is empty: remembered for a second, saving the
        # query for the messages queued meanwhile (the usual case: one per request).
        sql = (
            f"SELECT {column} FROM {table} WHERE {condition} "
            f"UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM {table})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = {row[0] for row in cursor.fetchall()}
        if None in found:
            _empty_until[self.db] = time.monotonic() + DONT_SEND_EMPTY_SECONDS
            return set()
        return found


# How long this process trusts that the don't-send list is empty without asking.
# Entries added here are seen at once (the cache is dropped on save and delete);
# entries added by another process within that time are caught at delivery,
# where the list is read again for every run.
DONT_SEND_EMPTY_SECONDS = 1.0
_empty_until: dict[str, float] = {}


def _forget_empty(**kwargs: Any) -> None:
    _empty_until.clear()


class DontSendEntry(models.Model):
    """An address no mail is sent to."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    to_address = models.EmailField(_("address"), max_length=254)
    when_added = models.DateTimeField(_("added at"), default=timezone.now)

    objects = DontSendEntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("don't send entry")
        verbose_name_plural = _("don't send entries")

    def __str__(self) -> str:
        return self.to_address


# -- Workers ---------------------------------------------------------------------


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


class Worker(models.Model):
    """A running delivery process, as it last reported itself."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    hostname = models.CharField(_("host"), max_length=200)
    pid = models.PositiveIntegerField(_("pid"))
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    heartbeat_at = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    concurrency = models.PositiveSmallIntegerField(_("connections"), default=1)
    sent = models.PositiveBigIntegerField(_("sent"), default=0)
    deferred = models.PositiveBigIntegerField(_("deferred"), default=0)
    failed = models.PositiveBigIntegerField(_("failed"), default=0)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")

    def __str__(self) -> str:
        return self.name


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


class DeliveryRun(models.Model):
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
    sent = models.PositiveBigIntegerField(_("sent"), default=0)
    deferred = models.PositiveBigIntegerField(_("deferred"), default=0)
    failed = models.PositiveBigIntegerField(_("failed"), default=0)

    objects = DeliveryRunQuerySet.as_manager()

    class Meta:
        verbose_name = _("delivery run")
        verbose_name_plural = _("delivery runs")

    def __str__(self) -> str:
        return self.name


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


class RateLimitQuerySet(models.QuerySet["RateLimit"]):
    def take(self, name: str, rate: float, want: int) -> tuple[int, float]:
        """Take up to ``want`` tokens from the shared bucket ``name`` refilled at ``rate``/s.

        Returns how many were granted and, if none, seconds until one is
        available. One short transaction; the bucket holds at most one
        second's worth of tokens.
        """
        burst = max(rate, 1.0)
        for _attempt in range(3):
            now = timezone.now()
            with transaction.atomic(using=self.db):
                # Write first: SQLite takes its write lock here; the others lock the row.
                if self.filter(name=name).update(name=name):
                    bucket = self.get(name=name)
                    elapsed = max((now - bucket.updated_at).total_seconds(), 0.0)
                    tokens = min(burst, bucket.tokens + elapsed * rate)
                else:
                    bucket, tokens = self.model(name=name), burst
                granted = min(want, int(tokens))
                bucket.tokens = tokens - granted
                bucket.updated_at = now
                try:
                    with transaction.atomic(using=self.db):
                        bucket.save(using=self.db)
                except IntegrityError:
                    continue  # another worker created the bucket first: read it
            wait = 0.0 if granted else (1.0 - bucket.tokens) / rate
            return granted, wait
        return 0, 1.0 / rate


class RateLimit(models.Model):
    """A token bucket shared by every worker: the global messages-per-second limit."""

    name = models.CharField(max_length=50, primary_key=True)
    tokens = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RateLimitQuerySet.as_manager()

    class Meta:
        verbose_name = _("rate limit")

    def __str__(self) -> str:
        return self.name


models.signals.post_save.connect(_forget_empty, sender=DontSendEntry)
models.signals.post_delete.connect(_forget_empty, sender=DontSendEntry)

"""Enqueueing: validate, drop don't-send recipients and INSERT, in the caller's transaction."""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, connections, models, transaction
from django.utils import timezone

from mailer import signals
from mailer.conf import settings
from mailer.exceptions import InvalidHeader, InvalidSchedule, MessageTooLarge, TablesMissing
from mailer.message import codec
from mailer.message.summary import SUBJECT_KEPT, summarize
from mailer.message.validation import (
    CONTROL_HEADERS,
    IDEMPOTENCY_KEY_HEADER,
    PRIORITY_HEADER,
    SEND_AT_HEADER,
    address_key,
    check_idempotency_key,
    validate,
)
from mailer.priorities import (
    parse_priority,
)
from mailer.queue import idempotency, sql
from mailer.queue.dontsend import DontSendEntry
from mailer.queue.log import MessageLog
from mailer.queue.rows import bytes_over
from mailer.queue.states import RESULT_DONT_SEND, new_row_state

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet


def enqueue(
    queryset: MessageQuerySet,
    emails: Sequence[EmailMessage],
    priority: int | str | None,
    mailer: str,
    send_at: datetime.datetime | None,
    expires_at: datetime.datetime | None,
) -> list[Message]:
    """``MessageQuerySet.enqueue``: check every message, then store them together."""
    now = timezone.now()
    default_priority = settings.DEFAULT_PRIORITY if priority is None else parse_priority(priority)
    send_at, expires_at = schedule(send_at, expires_at)
    prepared: list[tuple[EmailMessage, dict[str, Any], list[str]]] = []
    for email in emails:
        recipients = validate(email)
        doc = codec.to_document(email)
        prepared.append((email, doc, recipients))

    blocked = DontSendEntry.objects.using(queryset.db).blocked(
        address for _, _, recipients in prepared for address in recipients
    )
    assign_id = settings.ASSIGN_MESSAGE_ID
    max_size = settings.MAX_MESSAGE_SIZE
    packet = _max_packet(queryset.db)
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
            codec.assign_message_id(doc)
        if blocked:
            for field in ("to", "cc", "bcc"):
                doc[field] = [a for a in doc[field] if address_key(a) not in blocked]
            if not (doc["to"] or doc["cc"] or doc["bcc"]):
                skipped.append(_dont_send_log(doc, now, row_priority, recipients))
                continue
        elif not recipients:
            continue
        data = codec.dumps(doc)
        _check_size(data, max_size)
        if packet is not None and _statement_size(data) > packet - _STATEMENT_OVERHEAD:
            raise MessageTooLarge(
                f"The message is {_statement_size(data)} bytes once stored and escaped; with "
                f"the INSERT around it, that is over the database's max_allowed_packet "
                f"({packet}). Raise max_allowed_packet on the server or lower "
                "MAILER_MAX_MESSAGE_SIZE."
            )
        keyed = keyed or bool(key)
        rows.append(
            _new_message(
                queryset.model,
                message_data=data,
                when_added=now,
                **new_row_state(row_priority, row_send_at or now),
                expires_at=row_expires,
                mailer=mailer,
                idempotency_key=key,
            )
        )
    # One statement is atomic by itself; rows and don't-send log rows go together, and
    # so do keys and the rows that claim them.
    together: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if keyed:
        together = transaction.atomic(using=queryset.db, savepoint=False)
    elif rows and skipped:
        together = transaction.atomic(using=queryset.db)
    with together:
        if keyed:
            rows = idempotency.first_uses(rows, queryset.db, now)
        _store(queryset, rows, skipped, packet)
    return rows


def _store(
    queryset: MessageQuerySet, rows: list[Message], skipped: list[MessageLog], packet: int | None
) -> None:
    if rows:
        channel = sql.of(queryset.db).CHANNEL if settings.NOTIFY else ""
        if packet is not None:
            # One INSERT must fit in a packet: batch by size, all in one transaction.
            with transaction.atomic(using=queryset.db):
                for batch in _batches_within(rows, packet):
                    insert_rows(batch, queryset.db, settings.MESSAGES_BATCH_SIZE)
        else:
            insert_rows(rows, queryset.db, settings.MESSAGES_BATCH_SIZE, notify=channel)
        signals.queued_on_commit(queryset.model, rows, queryset.db)
    if skipped:
        MessageLog.objects.using(queryset.db).bulk_create(skipped)


@contextlib.contextmanager
def tables_required() -> Iterator[None]:
    """Say "run migrate" when the tables are missing: TablesMissing instead of the
    database's "no such table" (a DatabaseError too, keeping it as its cause)."""
    try:
        yield
    except DatabaseError as error:
        missing = TablesMissing.from_error(error)
        if missing is None:
            raise
        raise missing from error


@contextlib.contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
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
    dialect = sql.of(using)
    varying: list[models.Field[Any, Any]] = []
    shared: list[models.Field[Any, Any]] = []
    columns: list[tuple[str, models.Field[Any, Any] | None]] = []  # SQL, or None: bound per row
    for field in fields:
        value = getattr(sample, field.attname)
        same = all(getattr(row, field.attname) == value for row in rows)
        constant = _constant_sql(field, value) if same else None
        once = dialect.shared_value_sql(field, connection) if same else None
        if constant is not None:
            columns.append((constant, None))
        elif once is not None:
            shared.append(field)
            columns.append((once, None))
        else:
            varying.append(field)
            columns.append(("", field))
    per_batch = len(rows)
    limit = max_query_params(connection)
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
    head = f"INSERT INTO {quote(meta.db_table)} ({names}) "
    statement = dialect.insert_sql(connection, head, columns, len(varying), tail, notify)
    once_params = [prepare[f.attname](getattr(sample, f.attname)) for f in shared]
    # One statement is atomic by itself; several go in a transaction.
    batches = len(rows) > per_batch
    atomic = (
        transaction.atomic(using=using, savepoint=False) if batches else contextlib.nullcontext()
    )
    with atomic, connection.cursor() as cursor:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            params = [prepare[f.attname](getattr(row, f.attname)) for row in batch for f in varying]
            cursor.execute(statement(len(batch)), [*once_params, *params])
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


def max_query_params(connection: Any) -> int | None:
    """How many parameters one statement may have on ``connection`` (None: no limit)."""
    return sql.of(connection.alias).max_params(connection)


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
    """The most bytes one statement may have (MySQL/MariaDB's max_allowed_packet), or None."""
    return sql.of(using).max_packet(connections[using])


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
        subject_line=summarize(doc).get("subject", "")[:SUBJECT_KEPT],
    )

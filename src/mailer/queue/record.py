"""Recording outcomes: a batch of attempts as state changes and log rows.

``record_results`` applies each outcome (sent rows deleted, others deferred or
failed, one log row per attempt) in one short transaction. Results are
written as they come, a few at a time (``mailer.delivery.recorder``), so what a
write costs besides its rows -- building SQL, a round trip, the
driver's work on placeholders -- is most of what it costs. Here each
statement's text is built once per number of rows and kept, and bound values
need no more conversion than the database needs. On PostgreSQL, deleting the
messages and logging them is one statement whose rows travel as one JSON
document: its text never changes, and psycopg keeps it parsed.

``mailer.queue.enqueue.insert_rows`` stays the way to queue many messages at once.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connections, models, transaction
from django.utils import timezone

from mailer import signals
from mailer.conf import settings
from mailer.queue import retry, sql
from mailer.queue.enqueue import max_query_params
from mailer.queue.log import MessageLog
from mailer.queue.outcome import Outcome, Verdict
from mailer.queue.provider_ids import ProviderMessageId
from mailer.queue.states import RESULT_DONT_SEND, RESULT_FAILURE, RESULT_SUCCESS, Status

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet


def delete_ids(model: type[models.Model], ids: Sequence[int], using: str) -> None:
    """DELETE the rows of ``model`` with these ids (no signals: nothing listens to them)."""
    if not ids:
        return
    connection = connections[using]
    statement = _statement(connection, "delete", model, len(ids))
    with connection.cursor() as cursor:
        cursor.execute(statement, list(ids))


def insert_logs(
    rows: Sequence[models.Model],
    using: str,
    *,
    delete: tuple[type[models.Model], Sequence[int]] | None = None,
    max_params: int | None = None,
) -> None:
    """INSERT ``rows`` (new rows of one model) and set their ids.

    ``delete``: rows of another model to delete in the same statement, where the
    database has one for that (``insert_from_json`` of ``mailer.queue.sql``:
    PostgreSQL's, the rows as one JSON document). Elsewhere: one statement, or
    several in a transaction when the rows need more than ``max_params`` parameters.
    """
    if not rows:
        return
    connection = connections[using]
    model = type(rows[0])
    fields = _fields(model)
    insert_from_json = sql.of(using).insert_from_json
    if insert_from_json is not None:
        values = [{f.column: _json_value(f, getattr(r, f.attname)) for f in fields} for r in rows]
        document = json.dumps(values, separators=(",", ":"))
        ids = insert_from_json(connection, fields, document, delete)
        _saved(rows, ids, using)
        return
    assert delete is None, "deleting in the same statement needs PostgreSQL"
    returning = bool(connection.features.can_return_rows_from_bulk_insert)
    per_statement = len(rows) if max_params is None else max(1, max_params // len(fields))
    preparers = [(f.attname, _preparer(f, connection)) for f in fields]
    several = len(rows) > per_statement
    with transaction.atomic(using=using) if several else contextlib.nullcontext():
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            statement = _statement(connection, "insert", model, len(chunk), returning)
            params: list[Any] = []
            for row in chunk:
                params.extend([prep(getattr(row, name)) for name, prep in preparers])
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                ids = [r[0] for r in cursor.fetchall()] if returning else [None] * len(chunk)
            _saved(chunk, ids, using)


def _json_value(field: models.Field[Any, Any], value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(field, models.JSONField) and value is not None:
        return json.loads(json.dumps(value, cls=field.encoder)) if field.encoder else value
    return value


def _saved(rows: Sequence[models.Model], ids: Sequence[Any], using: str) -> None:
    for row, row_id in zip(rows, ids, strict=True):
        row.pk = row_id
        row._state.adding = False
        row._state.db = using


@functools.cache
def _fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    pk = model._meta.pk
    return [f for f in model._meta.concrete_fields if f is not pk]


_PLAIN = (models.CharField, models.TextField, models.IntegerField)


def _preparer(field: models.Field[Any, Any], connection: Any) -> Callable[[Any], Any]:
    """``field.get_db_prep_save`` for one write: skipped for text and whole numbers
    (bound as they are), remembered for datetimes (rows share them)."""
    prep = functools.partial(field.get_db_prep_save, connection=connection)
    if isinstance(field, _PLAIN) and type(field).get_db_prep_save is (
        models.Field.get_db_prep_save
    ):
        return functools.partial(_plain, prep)
    if isinstance(field, models.DateTimeField):
        return functools.lru_cache(maxsize=16)(prep)
    return prep


def _plain(prep: Callable[[Any], Any], value: Any) -> Any:
    return value if value is None or type(value) in (str, int) else prep(value)


_STATEMENTS: dict[tuple[Any, ...], str] = {}


def _statement(
    connection: Any,
    kind: str,
    model: type[models.Model],
    count: int,
    returning: bool = False,
) -> str:
    """The SQL of one kind of statement for ``count`` rows, built once."""
    key = (connection.alias, kind, model, count, returning)
    found = _STATEMENTS.get(key)
    if found is not None:
        return found
    quote = connection.ops.quote_name
    meta = model._meta
    assert meta.pk is not None
    table, pk = quote(meta.db_table), quote(str(meta.pk.column))
    fields = _fields(model)
    names = ", ".join(quote(str(f.column)) for f in fields)
    if kind == "delete":
        statement = f"DELETE FROM {table} WHERE {pk} IN ({', '.join(['%s'] * count)})"
    else:  # insert
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        statement = f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * count)}"
    if returning:
        statement += f" RETURNING {pk}"
    if len(_STATEMENTS) > 512:  # many distinct sizes: start again
        _STATEMENTS.clear()
    _STATEMENTS[key] = statement
    return statement


__all__ = ["delete_ids", "insert_logs"]


def record_results(
    queryset: MessageQuerySet,
    results: Sequence[tuple[Message, Outcome]],
    *,
    worker: str | Mapping[int, str] = "",
) -> None:
    """``MessageQuerySet.record``: a batch of outcomes as one short transaction."""
    if not results:
        return
    now = timezone.now()
    log_data = settings.EMAIL_LOG_MESSAGE_DATA
    done: list[int] = []
    changed: list[Message] = []
    logs: list[MessageLog] = []
    signalled: list[tuple[str, Message, Outcome, MessageLog | None]] = []
    provider_ids: list[tuple[MessageLog, dict[str, str]]] = []
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
                message_data=outcome.sent_data,
                message_id=outcome.message_id,
                when_attempted=now,
                recipients=[[r.address, *r.as_json()] for r in outcome.recipients],
                refused=len(outcome.refused),
                exception=outcome.exception,
                smtp_code=outcome.reply.code,
                smtp_reply=outcome.reply.text,
                worker=worker if isinstance(worker, str) else worker.get(message.pk, ""),
            )
            logs.append(log)
            if outcome.provider_ids:
                provider_ids.append((log, outcome.provider_ids))
        sent = final == "done" and outcome.verdict is Verdict.SENT
        signalled.append(("sent" if sent else final, message, outcome, log))
    db = queryset.db
    one_statement = sql.of(db).insert_from_json is not None
    if logs and not changed and not provider_ids and one_statement:
        # One statement, atomic by itself: results come a few at a time, and a
        # round trip (and a transaction's) is most of what writing them costs.
        insert_logs(logs, db, delete=(queryset.model, done) if done else None)
        signals.recorded_on_commit(queryset.model, signalled, db)
        return
    write = functools.partial(_write, queryset, done, changed, logs, signalled, provider_ids)
    sql.of(db).retrying_deadlocks(db, write)


def _write(
    queryset: MessageQuerySet,
    done: list[int],
    changed: list[Message],
    logs: list[MessageLog],
    signalled: list[tuple[str, Message, Outcome, MessageLog | None]],
    provider_ids: list[tuple[MessageLog, dict[str, str]]],
) -> None:
    """The writes of ``record``: one DELETE, one UPDATE and one INSERT (and one of the
    providers' message ids, when a provider gave some), in one transaction."""
    db = queryset.db
    with transaction.atomic(using=db):
        delete_ids(queryset.model, done, db)
        if changed:
            queryset.model.objects.using(db).bulk_update(
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
        insert_logs(logs, db, max_params=max_query_params(connections[db]))
        _insert_provider_ids(provider_ids, db)
        signals.recorded_on_commit(queryset.model, signalled, db)


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
    """The contract's free-text ``log_message`` for an attempt.

    An attempt that reached some recipients and was refused for others says so first:
    "sent to 2, refused 1: c@example.com: 550 5.1.1 no such user".
    """
    partly = _partly_refused(outcome)
    if outcome.verdict is Verdict.SENT:
        return partly
    if partly and final == "deferred" and message.due_at is not None:
        return f"{partly}; deferred until {message.due_at.isoformat(timespec='seconds')}"
    if outcome.verdict is Verdict.SKIPPED:
        return "every recipient is on the don't-send list"
    if final == "deferred" and message.due_at is not None:
        return f"deferred until {message.due_at.isoformat(timespec='seconds')}: {outcome.reply}"
    return message.last_reply if final == "failed" else str(outcome.reply)


def _partly_refused(outcome: Outcome) -> str:
    """ "sent to N, refused M: <address>: <reply>; ..." for an attempt that reached some
    recipients and was refused for others; empty otherwise."""
    refused, delivered = outcome.refused, outcome.delivered
    if not refused or not delivered:
        return ""
    replies = "; ".join(f"{r.address}: {r.reply}" for r in refused)
    return f"sent to {len(delivered)}, refused {len(refused)}: {replies}"


def _insert_provider_ids(found: list[tuple[MessageLog, dict[str, str]]], using: str) -> None:
    """One ``ProviderMessageId`` row per recipient a provider gave an id (after the logs)."""
    if not found:
        return
    for log, _ids in found:
        if log.pk is None:  # MySQL returns no ids from a multi-row INSERT: ask for it
            log.pk = (
                MessageLog.objects.using(using)
                .filter(
                    queue_id=log.queue_id, attempt=log.attempt, when_attempted=log.when_attempted
                )
                .values_list("pk", flat=True)
                .order_by("-pk")
                .first()
            )
    rows = [
        ProviderMessageId(log_id=log.pk, address=address[:254], provider_id=provider_id[:255])
        for log, ids in found
        for address, provider_id in ids.items()
    ]
    insert_logs(rows, using, max_params=max_query_params(connections[using]))

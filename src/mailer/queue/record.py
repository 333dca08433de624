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
    """INSERT ``rows`` (new rows of one model) and set their ids (see :func:`insert_values`)."""
    if not rows:
        return
    model = type(rows[0])
    names = [f.attname for f in _fields(model)]
    values = [[getattr(row, name) for name in names] for row in rows]
    ids = insert_values(model, values, using, delete=delete, max_params=max_params)
    _saved(rows, ids, using)


def insert_values(
    model: type[models.Model],
    rows: Sequence[Sequence[Any]],
    using: str,
    *,
    delete: tuple[type[models.Model], Sequence[int]] | None = None,
    max_params: int | None = None,
    ids: bool = True,
) -> list[Any]:
    """INSERT new rows of ``model``, each given as its values (one per column but the id,
    in the table's order); return their ids (None where the database gives none, or
    ``ids`` is false).

    ``delete``: rows of another model to delete in the same statement, where the
    database has one for that (``insert_from_json`` of ``mailer.queue.sql``:
    PostgreSQL's, the rows as one JSON document). Elsewhere: one statement, or
    several in a transaction when the rows need more than ``max_params`` parameters;
    without ``ids``, one ``executemany`` of a one-row statement, whose text the
    driver prepares once (SQLite runs it row by row, MySQL's driver makes one
    multi-row INSERT of it), rather than a statement whose text grows with the rows.
    """
    if not rows:
        return []
    connection = connections[using]
    fields = _fields(model)
    insert_from_json = sql.of(using).insert_from_json
    if insert_from_json is not None:
        columns = _json_columns(model)
        document = json.dumps(
            [
                {
                    column: value if type(value) in _AS_IS else _json_value(field, value)
                    for (column, field), value in zip(columns, row, strict=True)
                }
                for row in rows
            ],
            separators=(",", ":"),
        )
        return list(insert_from_json(connection, fields, document, delete))
    assert delete is None, "deleting in the same statement needs PostgreSQL"
    preparers = [_preparer(f, connection) for f in fields]

    def bound(row: Sequence[Any]) -> list[Any]:
        return [
            value if as_is and type(value) in _AS_IS else prep(value)
            for value, (prep, as_is) in zip(row, preparers, strict=True)
        ]

    if not ids:
        with connection.cursor() as cursor:
            cursor.executemany(
                _statement(connection, "insert", model, 1), [bound(row) for row in rows]
            )
        return [None] * len(rows)
    returning = bool(connection.features.can_return_rows_from_bulk_insert)
    per_statement = len(rows) if max_params is None else max(1, max_params // len(fields))
    several = len(rows) > per_statement
    found: list[Any] = []
    with transaction.atomic(using=using) if several else contextlib.nullcontext():
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            statement = _statement(connection, "insert", model, len(chunk), returning)
            params = [value for row in chunk for value in bound(row)]
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                found += [r[0] for r in cursor.fetchall()] if returning else [None] * len(chunk)
    return found


# Values a text or integer column binds as they are, and JSON carries as they are.
_AS_IS = frozenset({str, int, type(None)})


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


@functools.cache
def _json_columns(model: type[models.Model]) -> list[tuple[str, models.Field[Any, Any]]]:
    return [(str(f.column), f) for f in _fields(model)]


_PLAIN = (models.CharField, models.TextField, models.IntegerField)


def _preparer(field: models.Field[Any, Any], connection: Any) -> tuple[Callable[[Any], Any], bool]:
    """``field.get_db_prep_save`` for one write, remembered for datetimes (rows share
    them); and whether text and whole numbers are bound as they are (they need no
    conversion in a text or integer field of Django's)."""
    prep = functools.partial(field.get_db_prep_save, connection=connection)
    if isinstance(field, _PLAIN) and type(field).get_db_prep_save is (
        models.Field.get_db_prep_save
    ):
        return prep, True
    if isinstance(field, models.DateTimeField):
        return functools.lru_cache(maxsize=16)(prep), False
    return prep, False


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


__all__ = ["delete_ids", "insert_logs", "insert_values", "still_unrecorded"]


def record_results(
    queryset: MessageQuerySet,
    results: Sequence[tuple[Message, Outcome]],
    *,
    worker: str | Mapping[int, str] = "",
) -> None:
    """``MessageQuerySet.record``: a batch of outcomes as one short transaction.

    Log rows are written from their values (``MessageLog.values_about``); model
    instances are made only for what needs them: receivers of the result signals,
    and the providers' message ids, which refer to their log row.
    """
    if not results:
        return
    now = timezone.now()
    log_data = settings.EMAIL_LOG_MESSAGE_DATA
    done: list[int] = []
    changed: list[Message] = []
    logs: list[list[Any]] = []  # the values of each log row
    signalled: list[_Signalled] = []
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
        log = None
        if not getattr(message, "_logged_attempt", False):  # else an error handler logged it
            log = len(logs)
            logs.append(
                MessageLog.values_about(
                    message,
                    _RESULTS.get(outcome.verdict, RESULT_FAILURE),
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
            )
        sent = final == "done" and outcome.verdict is Verdict.SENT
        signalled.append(("sent" if sent else final, message, outcome, log))
    db = queryset.db
    one_statement = sql.of(db).insert_from_json is not None
    with_ids = any(outcome.provider_ids for _, outcome in results)
    if logs and not changed and not with_ids and one_statement:
        # One statement, atomic by itself: results come a few at a time, and a
        # round trip (and a transaction's) is most of what writing them costs.
        ids = insert_values(MessageLog, logs, db, delete=(queryset.model, done) if done else None)
        _signal(queryset.model, signalled, logs, ids, db)
        return
    write = functools.partial(_write, queryset, done, changed, logs, signalled)
    sql.of(db).retrying_deadlocks(db, write)


def still_unrecorded(
    queryset: MessageQuerySet, claimed: Mapping[int, Mapping[str, Any]]
) -> set[int]:
    """Of the results of a write that failed, and may have committed all the same (its
    answer lost), the messages whose result is not written yet: each message's fields
    as handed over in ``claimed``. A claim must be held still as it was (same claimer,
    same retry count); an attempt an error handler saved itself (``Message.defer``)
    must have no log row yet."""
    held = queryset.still_claimed(
        {
            pk: (fields["claimed_by"], fields["retry_count"])
            for pk, fields in claimed.items()
            if not fields.get("_deferred_by_handler")
        }
    )
    saved = {
        pk: fields["retry_count"]
        for pk, fields in claimed.items()
        if fields.get("_deferred_by_handler") and not fields.get("_logged_attempt")
    }
    if saved:
        logged = MessageLog.objects.using(queryset.db).filter(queue_id__in=list(saved))
        found = set(logged.values_list("queue_id", "attempt"))
        held |= {pk for pk, attempt in saved.items() if (pk, attempt) not in found}
    return held


_RESULTS = {Verdict.SENT: RESULT_SUCCESS, Verdict.SKIPPED: RESULT_DONT_SEND}
# (final state, message, outcome, index of its log row among those written, if any)
_Signalled = tuple[str, "Message", Outcome, int | None]


def _write(
    queryset: MessageQuerySet,
    done: list[int],
    changed: list[Message],
    logs: list[list[Any]],
    signalled: list[_Signalled],
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
        ids = insert_values(
            MessageLog,
            logs,
            db,
            max_params=max_query_params(connections[db]),
            ids=_rows_wanted(queryset.model, signalled),
        )
        _signal(queryset.model, signalled, logs, ids, db)


def _rows_wanted(model: type[Message], signalled: list[_Signalled]) -> bool:
    """Are log rows (with their ids) wanted: for the providers' message ids, or signals?"""
    return any(
        log is not None and outcome.provider_ids for _, _, outcome, log in signalled
    ) or signals.result_listeners(model)


def _signal(
    model: type[Message],
    signalled: list[_Signalled],
    logs: list[list[Any]],
    ids: list[Any],
    using: str,
) -> None:
    """The providers' message ids, and the result signals on commit, with the log rows
    they need made from their values (none when nothing needs them)."""
    if not _rows_wanted(model, signalled):
        return
    provider_ids = [
        (log, outcome.provider_ids)
        for _, _, outcome, log in signalled
        if log is not None and outcome.provider_ids
    ]
    rows = [MessageLog.from_values(values) for values in logs]
    _saved(rows, ids, using)
    _insert_provider_ids([(rows[log], found) for log, found in provider_ids], using)
    signals.recorded_on_commit(
        model,
        [
            (state, message, outcome, None if log is None else rows[log])
            for state, message, outcome, log in signalled
        ],
        using,
    )


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

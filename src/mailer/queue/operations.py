"""What an operator does to queued mail by hand: retry now, requeue, cancel, send a copy.

The admin's actions call these. Each one changes a row only in the state it
was selected for, in one conditional statement, so a message a worker claims
meanwhile is left to the worker and reported as skipped. Each returns a
:class:`Report` saying what it did and what it left alone, and why.
"""

from __future__ import annotations

import datetime
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import ngettext_lazy

from mailer.conf import settings
from mailer.exceptions import InvalidMessage, MailerWarning, UndecodableMessage
from mailer.message import codec
from mailer.message.validation import address_key
from mailer.priorities import PRIORITY_DEFERRED
from mailer.queue.log import MessageLog
from mailer.queue.message import Message
from mailer.queue.states import RESULT_DONT_SEND, Status

CHUNK = 500
# Copies are made one INSERT each and cannot be taken back: a slip of "select all" must not
# queue a million of them.
MAX_COPIES = 100

# Why a message was left alone, completing "N skipped because ...".
SENDING = "sending"
ALREADY_DUE = "already_due"
FAILED = "failed"
NOT_FAILED = "not_failed"
EXPIRED = "expired"
CHANGED = "changed"
NO_DATA = "no_data"
UNDECODABLE = "undecodable"
INVALID = "invalid"
BLOCKED = "blocked"
REASONS: dict[str, Promise] = {
    SENDING: ngettext_lazy("it was being sent", "they were being sent", "count"),
    ALREADY_DUE: ngettext_lazy("it was already due", "they were already due", "count"),
    FAILED: ngettext_lazy(
        "it had failed (use “Requeue failed messages”)",
        "they had failed (use “Requeue failed messages”)",
        "count",
    ),
    NOT_FAILED: ngettext_lazy("it had not failed", "they had not failed", "count"),
    EXPIRED: ngettext_lazy("it had expired", "they had expired", "count"),
    CHANGED: ngettext_lazy(
        "a worker sent or took it meanwhile", "a worker sent or took them meanwhile", "count"
    ),
    NO_DATA: ngettext_lazy("its content was not kept", "their content was not kept", "count"),
    UNDECODABLE: ngettext_lazy(
        "its stored data cannot be decoded", "their stored data cannot be decoded", "count"
    ),
    INVALID: ngettext_lazy(
        "it cannot be queued any more", "they cannot be queued any more", "count"
    ),
    BLOCKED: ngettext_lazy(
        "all its recipients are on the don't-send list",
        "all their recipients are on the don't-send list",
        "count",
    ),
}
SKIPPED = ngettext_lazy(
    "%(count)d skipped because %(because)s", "%(count)d skipped because %(because)s", "count"
)
RETRIED = ngettext_lazy("%(count)d message retried", "%(count)d messages retried", "count")
REQUEUED = ngettext_lazy("%(count)d message requeued", "%(count)d messages requeued", "count")
CANCELLED = ngettext_lazy("%(count)d message cancelled", "%(count)d messages cancelled", "count")
COPIED = ngettext_lazy("%(count)d copy queued", "%(count)d copies queued", "count")


@dataclass
class Report:
    """What an operation did: how many messages it changed, and why it left others alone."""

    verb: Promise  # RETRIED, REQUEUED...
    done: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    created: list[int] = field(default_factory=list)  # ids of messages queued by the operation

    def __str__(self) -> str:
        parts = [self.verb % {"count": self.done}]
        for reason, count in self.skipped.most_common():
            because = REASONS[reason] % {"count": count}
            parts.append(SKIPPED % {"count": count, "because": because})
        return ", ".join(parts) + "."


def _chunks(queryset: models.QuerySet[Any], *fields: str) -> Iterator[list[tuple[Any, ...]]]:
    """``fields`` of the rows of ``queryset`` (pk first), a few hundred at a time, by pk."""
    rows = queryset.order_by("pk").values_list("pk", *fields)
    last: Any = None
    while True:
        page = list((rows if last is None else rows.filter(pk__gt=last))[:CHUNK])
        if not page:
            return
        yield page
        last = page[-1][0]


def _eligible(
    queryset: models.QuerySet[Message],
    report: Report,
    fields: Sequence[str],
    reason_to_skip: Callable[..., str | None],
) -> Iterator[list[int]]:
    """The ids of ``queryset``'s rows, a page at a time, that ``reason_to_skip`` (given
    the row's ``fields``) leaves to the operation; the others are counted in ``report``
    under the reason it gives."""
    for page in _chunks(queryset, *fields):
        eligible = []
        for pk, *values in page:
            reason = reason_to_skip(*values)
            if reason is None:
                eligible.append(pk)
            else:
                report.skipped[reason] += 1
        if eligible:
            yield eligible


def _count(report: Report, eligible: Sequence[int], done: int) -> None:
    """``done`` of the ``eligible`` rows changed; a worker took or sent the others meanwhile."""
    report.done += done
    report.skipped[CHANGED] += len(eligible) - done


def _take(ids: Sequence[int], statuses: Sequence[str], now: datetime.datetime) -> list[Message]:
    """Claim the rows among ``ids`` still in ``statuses`` for this transaction; return them.

    The claim is one UPDATE, so it wins or loses against a worker's claim as a
    whole; the owner name then says which rows this UPDATE changed. Call inside
    a transaction that ends by releasing or deleting them: if it rolls back,
    the rows are as they were.
    """
    owner = f"mailer-admin-{uuid.uuid4().hex}"
    Message.objects.filter(pk__in=list(ids), status__in=list(statuses)).update(
        status=Status.CLAIMED,
        claimed_by=owner,
        due_at=None,
        lease_expires_at=now + datetime.timedelta(seconds=settings.LEASE_SECONDS),
    )
    return list(Message.objects.filter(claimed_by=owner).order_by("pk"))


def retry_now(queryset: models.QuerySet[Message]) -> Report:
    """Make scheduled, deferred and held messages due now (keeping their priority)."""
    report = Report(RETRIED)
    now = timezone.now()
    waiting = Q(status=Status.DEFERRED) | Q(status=Status.QUEUED) & (
        Q(due_at__gt=now) | Q(due_at__isnull=True)
    )

    def reason_to_skip(status: str, due_at: datetime.datetime | None) -> str | None:
        if status == Status.CLAIMED:
            return SENDING
        if status == Status.FAILED:
            return FAILED
        if status == Status.QUEUED and due_at is not None and due_at <= now:
            return ALREADY_DUE
        return None

    for eligible in _eligible(queryset, report, ("status", "due_at"), reason_to_skip):
        changed = (
            Message.objects.filter(pk__in=eligible)
            .filter(waiting)
            .update(status=Status.QUEUED, due_at=now)
        )
        _count(report, eligible, changed)
    return _tidy(report)


def requeue_failed(queryset: models.QuerySet[Message]) -> Report:
    """Give failed messages another attempt, now, at the recipients that have not accepted them.

    Recipients that accepted the message are not sent it again; those that
    refused it are tried again. Failed attempts keep counting: a message whose
    retries are spent gets this one attempt only. Expired messages are left
    failed.
    """
    report = Report(REQUEUED)
    now = timezone.now()

    def reason_to_skip(status: str, expires_at: datetime.datetime | None) -> str | None:
        if status != Status.FAILED:
            return SENDING if status == Status.CLAIMED else NOT_FAILED
        if expires_at is not None and expires_at <= now:
            return EXPIRED
        return None

    for eligible in _eligible(queryset, report, ("status", "expires_at"), reason_to_skip):
        with transaction.atomic():
            taken = _take(eligible, [Status.FAILED], now)
            for message in taken:
                message.status = Status.QUEUED
                message.due_at = now
                message.claimed_by = ""
                message.lease_expires_at = None
                message.recipient_results = {
                    address: result
                    for address, result in (message.recipient_results or {}).items()
                    if _accepted(result)
                }
            Message.objects.bulk_update(
                taken,
                ["status", "due_at", "claimed_by", "lease_expires_at", "recipient_results"],
            )
        _count(report, eligible, len(taken))
    return _tidy(report)


def _accepted(result: Any) -> bool:
    """Did this ``recipient_results`` entry ([verdict, code, text]) end the recipient's part?"""
    return isinstance(result, list) and bool(result) and result[0] in ("sent", "skipped")


def cancel(queryset: models.QuerySet[Message], *, by: str) -> Report:
    """Take messages off the queue, leaving for each a log row that says who cancelled it.

    Messages being sent are left alone. The log row has the "don't send"
    result, the recipients not yet served, and (as for sent mail, when
    ``MAILER_EMAIL_LOG_MESSAGE_DATA`` is on) the message itself.
    """
    report = Report(CANCELLED)
    now = timezone.now()
    reason = f"cancelled in the admin by {by}" if by else "cancelled in the admin"
    keep_data = settings.EMAIL_LOG_MESSAGE_DATA

    def reason_to_skip(status: str) -> str | None:
        return SENDING if status == Status.CLAIMED else None

    for eligible in _eligible(queryset, report, ("status",), reason_to_skip):
        with transaction.atomic():
            taken = _take(eligible, [Status.QUEUED, Status.DEFERRED, Status.FAILED], now)
            MessageLog.objects.bulk_create(
                [_cancel_log(message, now, reason, keep_data) for message in taken]
            )
            Message.objects.filter(pk__in=[m.pk for m in taken]).delete()
        _count(report, eligible, len(taken))
    return _tidy(report)


def _cancel_log(
    message: Message, now: datetime.datetime, reason: str, keep_data: bool
) -> MessageLog:
    summary = message.summary
    served = {address_key(address) for address in (message.recipient_results or {})}
    pending = [
        address
        for kind in ("to", "cc", "bcc")
        for address in summary.get(kind, [])
        if address_key(address) not in served
    ]
    return MessageLog.about(
        message,
        RESULT_DONT_SEND,
        reason,
        keep_data=keep_data,
        message_id=summary.get("message_id"),
        when_attempted=now,
        recipients=[[address, "cancelled", None, reason] for address in pending],
    )


def send_copy(rows: Sequence[Message | MessageLog]) -> Report:
    """Queue a new message with the content and recipients of each row, due now.

    The copy gets a Message-ID of its own (receivers drop a second message
    with a Message-ID they have seen), the row's priority and mailer, and goes
    through the don't-send list like any new mail.
    """
    report = Report(COPIED)
    for row in rows:
        if not row.message_data:
            report.skipped[NO_DATA] += 1
            continue
        try:
            with warnings.catch_warnings():
                # An unknown message class is rebuilt as Django's; the copy is still right.
                warnings.simplefilter("ignore", MailerWarning)
                email = codec.decode(row.message_data)
        except UndecodableMessage:
            report.skipped[UNDECODABLE] += 1
            continue
        email.extra_headers = {
            name: value
            for name, value in email.extra_headers.items()
            if name.lower() != "message-id"
        }
        try:
            priority = None if row.priority == PRIORITY_DEFERRED else row.priority
            queued = Message.objects.enqueue([email], priority=priority, mailer=row.mailer)
        except InvalidMessage:
            report.skipped[INVALID] += 1
            continue
        if not queued:
            report.skipped[BLOCKED] += 1
            continue
        report.done += 1
        report.created.extend(message.pk for message in queued)
    return _tidy(report)


def too_many_to_copy(count: int) -> str:
    return _("Select at most %(limit)d messages to copy at once (%(count)d were selected).") % {
        "limit": MAX_COPIES,
        "count": count,
    }


def _tidy(report: Report) -> Report:
    report.skipped = +report.skipped  # drop reasons that counted nothing
    return report

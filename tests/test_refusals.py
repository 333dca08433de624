"""A message delivered to some recipients and refused for others is *sent, with refusals*:
the log row says "sent to 2, refused 1" with each refusal's reply, the admin filters such
attempts, the dashboard and ``mailer_status`` count refused recipients over the last hour
and day, and ``message_sent`` receivers see them. Over SMTP with the real test server."""

from __future__ import annotations

import datetime
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from mailer import signals
from mailer.admin import dashboard
from mailer.engine import SendCounts, send_all
from mailer.models import RESULT_SUCCESS, Message, MessageLog
from mailer.outcome import Outcome
from mailer.queue import health

from .admin_pages import LOG_LIST, rows, text
from .assertions import MailAssertions
from .samples import plain

pytestmark = pytest.mark.django_db(transaction=True)

GHOST = "ghost@example.com"
NO_SUCH_USER = "550 5.1.1 No such user"


@pytest.fixture
def server(smtp: Any) -> Any:
    smtp.faults.refuse_rcpt = {GHOST: NO_SUCH_USER}
    return smtp


def sent_with_one_refusal() -> MessageLog:
    message = plain(to=["alice@example.com", GHOST, "bob@example.com"])
    Message.objects.enqueue([message])
    assert send_all() == SendCounts(sent=1)
    return MessageLog.objects.get()


class TestTheLogRow(MailAssertions):
    def test_says_sent_to_2_refused_1_with_the_reply(self, server: Any) -> None:
        log = sent_with_one_refusal()

        assert log.result == RESULT_SUCCESS
        assert log.log_message == f"sent to 2, refused 1: {GHOST}: {NO_SUCH_USER}"
        assert log.refused == 1
        assert [GHOST, "permanent", 550, "5.1.1 No such user"] in log.recipients

    def test_a_transient_refusal_is_counted_and_the_message_deferred_for_that_recipient(
        self, smtp: Any
    ) -> None:
        smtp.faults.refuse_rcpt = {"busy@example.com": "452 4.2.2 Mailbox full"}
        Message.objects.enqueue([plain(to=["alice@example.com", "busy@example.com"])])

        assert send_all() == SendCounts(deferred=1)

        log = MessageLog.objects.get()
        assert log.refused == 1
        assert log.log_message.startswith(
            "sent to 1, refused 1: busy@example.com: 452 4.2.2 Mailbox full; deferred until "
        )

    def test_an_attempt_refused_by_nobody_counts_none(self, smtp: Any) -> None:
        Message.objects.enqueue([plain(to=["alice@example.com", "bob@example.com"])])
        send_all()

        log = MessageLog.objects.get()
        assert (log.refused, log.log_message) == (0, "")

    def test_a_refused_message_is_no_refused_recipient(self, smtp: Any) -> None:
        """Refused means a reply for that recipient: a refusal at DATA is the message's."""
        smtp.faults.refuse_data = {b"tok-": "451 4.3.0 try later"}
        Message.objects.enqueue([plain(to=["alice@example.com", "bob@example.com"])])
        send_all()

        assert MessageLog.objects.get().refused == 0


def test_the_admin_filters_attempts_with_refused_recipients(
    server: Any, admin_client: Client
) -> None:
    refused = sent_with_one_refusal()
    Message.objects.enqueue([plain(to=["carol@example.com"])])
    send_all()
    clean = MessageLog.objects.exclude(pk=refused.pk).get()

    assert rows(admin_client.get(LOG_LIST, {"refused": "yes"})) == [str(refused.pk)]
    assert rows(admin_client.get(LOG_LIST, {"refused": "no"})) == [str(clean.pk)]
    assert "?refused=yes" in text(admin_client.get(LOG_LIST))


def test_mailer_status_counts_refused_recipients_over_the_hour_and_day(server: Any) -> None:
    sent_with_one_refusal()
    older = sent_with_one_refusal_at(timezone.now() - datetime.timedelta(hours=3))

    report = StringIO()
    call_command("mailer_status", stdout=report)
    as_json = StringIO()
    call_command("mailer_status", "--json", stdout=as_json)

    assert older.refused == 1
    assert "last hour: 1 attempt, 0 deferred or failed (0.0%), 1 recipient refused" in (
        report.getvalue()
    )
    assert "last day: 2 attempts, 0 deferred or failed (0.0%), 2 recipients refused" in (
        report.getvalue()
    )
    parsed = json.loads(as_json.getvalue())
    assert parsed["last_hour"]["refused_recipients"] == 1
    assert parsed["last_day"]["refused_recipients"] == 2
    last_hour, last_day = health.attempts(timezone.now(), "default")
    assert (last_hour.refused, last_day.refused) == (1, 2)


def sent_with_one_refusal_at(when: datetime.datetime) -> MessageLog:
    """A second partly refused delivery, its log row moved back to ``when``."""
    before = set(MessageLog.objects.values_list("pk", flat=True))
    Message.objects.enqueue([plain(to=["dora@example.com", GHOST])])
    send_all()
    log = MessageLog.objects.exclude(pk__in=before).get()
    MessageLog.objects.filter(pk=log.pk).update(when_attempted=when)
    return log


def test_the_dashboard_counts_and_links_refused_recipients(
    server: Any, admin_client: Client
) -> None:
    sent_with_one_refusal()
    sent_with_one_refusal_at(timezone.now() - datetime.timedelta(hours=3))

    data = dashboard.gather()
    page = text(admin_client.get("/admin/mailer/message/dashboard/"))

    assert (data.refused_last_hour, data.refused_last_day) == (1, 2)
    assert f'href="{LOG_LIST}?refused=yes">2</a> refused recipients' in page
    assert "(1 in the last hour)" in page


def test_message_sent_receivers_see_the_refused_recipients(server: Any) -> None:
    seen: list[tuple[list[str], list[str], int]] = []

    def receiver(sender: Any, message: Message, outcome: Outcome, log: Any, **kw: Any) -> None:
        seen.append(
            (
                [r.address for r in outcome.refused],
                [f"{r.reply}" for r in outcome.refused],
                len(outcome.delivered),
            )
        )

    signals.message_sent.connect(receiver)
    try:
        sent_with_one_refusal()
    finally:
        signals.message_sent.disconnect(receiver)

    assert seen == [([GHOST], [NO_SUCH_USER], 2)]

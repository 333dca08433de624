"""The admin reads right: lists whose cells fit, "Show all" only when it shows more, log pages of
deferred attempts, plurals and "less than a minute", and delivery by ``send_mail`` on the dashboard.

The browser tests (tests/browser/) check that the lists fit the page; these check what the cells
and pages say.
"""

from __future__ import annotations

import datetime
import io
import re
from html import escape as html_escape
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from mailer.admin import display
from mailer.engine import send_all
from mailer.models import (
    RESULT_FAILURE,
    DeliveryRun,
    Message,
    MessageLog,
    Status,
    Worker,
)

from .admin_pages import LIST, LOG_LIST, cells, queue, text, visible
from .samples import plain, with_subject

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/mailer/message/dashboard/"
MINUTE = datetime.timedelta(minutes=1)


# -- "Show all" ---------------------------------------------------------------------------


def test_an_unfiltered_list_offers_no_show_all(admin_client: Client) -> None:
    for _ in range(5):
        queue()
    page = visible(admin_client.get(LIST))
    assert "Show all" not in page
    assert "5 messages" in page


def test_a_filter_that_hides_rows_offers_show_all(admin_client: Client) -> None:
    queue(status=Status.FAILED, due_at=None)
    queue(status=Status.FAILED, due_at=None)
    queue()
    page = visible(admin_client.get(f"{LIST}?state=failed"))
    assert "2 results (Show all)" in page


def test_a_filter_that_hides_nothing_offers_no_show_all(admin_client: Client) -> None:
    queue(status=Status.FAILED, due_at=None)
    queue(status=Status.FAILED, due_at=None)
    page = visible(admin_client.get(f"{LIST}?state=failed"))
    assert "Show all" not in page


def test_a_search_that_hides_rows_offers_show_all(admin_client: Client) -> None:
    queue(with_subject("Invoice 12"))
    queue(with_subject("Welcome"))
    assert "1 result (Show all)" in visible(admin_client.get(f"{LIST}?q=Invoice"))
    assert "Show all" not in visible(admin_client.get(f"{LIST}?q=Invoice+OR+Welcome&q="))


# -- Cells that fit ---------------------------------------------------------------------------


def test_a_long_reply_is_shortened_in_the_list_and_whole_in_its_title(
    admin_client: Client,
) -> None:
    reply = "4.2.2 Mailbox full: " + "the recipient's mailbox is over its quota " * 8
    message = queue(status=Status.DEFERRED, last_code=452, last_reply=reply)
    response = admin_client.get(LIST)
    (cell,) = cells(response, "last_reply_column")
    assert cell.startswith("452 4.2.2 Mailbox full") and cell.endswith("…")
    assert len(cell) <= display.LIST_TEXT
    assert f'title="{html_escape("452 " + reply.rstrip())}"' in text(response)
    # The message's page shows it whole.
    page = visible(admin_client.get(f"{LIST}{message.pk}/change/"))
    assert "452 " + reply.rstrip() in page


def test_a_long_subject_is_shortened_in_the_list(admin_client: Client) -> None:
    message = queue(with_subject("Your order " + "and everything in it " * 10))
    response = admin_client.get(LIST)
    (cell,) = cells(response, "subject_column")
    assert cell.endswith("…") and len(cell) <= display.LIST_TEXT
    assert f'title="{html_escape(message.subject)}"' in text(response)


def test_addresses_may_wrap_before_their_at_sign_and_dots(admin_client: Client) -> None:
    queue(plain(["first.person@example.com", "second@example.org", "third@example.net"]))
    response = admin_client.get(LIST)
    assert cells(response, "to_column") == ["first.person@example.com, second@example.org (+1)"]
    page = text(response)
    assert "first.<wbr>person<wbr>@example.<wbr>com" in page
    # The one not shown is in the title.
    assert 'title="first.person@example.com, second@example.org, third@example.net"' in page


def test_a_very_long_address_is_shortened_with_the_whole_in_the_title(
    admin_client: Client,
) -> None:
    address = "a.very.long.mailbox.name.for.a.team@" + "department." * 4 + "example.com"
    queue(plain([address]))
    response = admin_client.get(LIST)
    (cell,) = cells(response, "to_column")
    assert cell.endswith("…") and len(cell) == display.LIST_ADDRESS
    assert f'title="{address}"' in text(response)


def test_list_times_say_how_long_ago_or_how_soon_with_the_time_in_the_title(
    admin_client: Client,
) -> None:
    queue(status=Status.DEFERRED, due_at=timezone.now() + 3 * datetime.timedelta(hours=1))
    response = admin_client.get(LIST)
    assert cells(response, "queued_column") == ["less than a minute ago"]
    assert cells(response, "due_column") in (["in 3 hours"], ["in 2 hours"])
    assert re.search(
        r'<time datetime="[-0-9T:+]+" title="[^"]+">in [23] hours</time>', text(response)
    )


def test_the_log_list_says_when_each_attempt_was_made(admin_client: Client) -> None:
    message = queue()
    MessageLog.objects.create(
        when_added=message.when_added,
        when_attempted=timezone.now() - 2 * datetime.timedelta(days=1),
        priority=2,
        result=RESULT_FAILURE,
        subject_line="Kept subject",
    )
    response = admin_client.get(LOG_LIST)
    assert cells(response, "subject_column") == ["Kept subject"]
    assert "2 days ago" in visible(response)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (-20, "less than a minute ago"),
        (20, "in less than a minute"),
        (-61, "1 minute ago"),
        (-3600 * 5 - 120, "5 hours, 2 minutes ago"),
        (86400 + 3600, "in 1 day, 1 hour"),
    ],
)
def test_relative_times_in_words(seconds: int, said: str) -> None:
    now = timezone.now()
    words = display.relative(now + datetime.timedelta(seconds=seconds), now)
    assert words.replace("\xa0", " ") == said


# -- Log pages of deferred attempts ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_deferred_attempt_keeps_the_subject_and_recipients_but_not_the_message(
    smtp: Any,
) -> None:
    smtp.faults.transient_first = 1
    queue(with_subject("Quarterly report"))
    send_all()
    log = MessageLog.objects.get()
    assert log.message_data is None
    assert log.subject_line.startswith("Quarterly report") and log.subject == log.subject_line
    assert [entry[:2] for entry in log.recipients] == [["alice@example.com", "transient"]]


@pytest.mark.django_db(transaction=True)
def test_the_log_keeps_the_subject_when_it_keeps_no_message_data(smtp: Any, settings: Any) -> None:
    settings.MAILER_EMAIL_LOG_MESSAGE_DATA = False
    queue(with_subject("Receipt"))
    send_all()
    log = MessageLog.objects.get()
    assert log.message_data is None and log.subject.startswith("Receipt tok-")


@pytest.mark.django_db(transaction=True)
def test_a_row_that_keeps_the_message_reads_the_subject_from_it(smtp: Any) -> None:
    message = queue(with_subject("Welcome"))
    send_all()
    log = MessageLog.objects.get()
    assert log.message_data and log.subject_line == ""  # nothing read at delivery
    assert log.subject == message.subject


@pytest.mark.django_db(transaction=True)
def test_the_page_of_a_deferred_attempt_shows_its_subject_and_a_note(
    admin_client: Client, smtp: Any
) -> None:
    smtp.faults.transient_first = 1
    message = queue(with_subject("Quarterly report"))
    send_all()
    log = MessageLog.objects.get()
    response = admin_client.get(f"{LOG_LIST}{log.pk}/change/")
    page = text(response)
    headers = page[page.index('id="mailer-headers"') : page.index('id="mailer-recipients"')]
    assert "errornote" not in headers
    assert "Quarterly report" in headers
    assert html_escape(str(message.stored_message_id)) in headers
    assert 'class="mailer-note mailer-not-kept"' in headers
    assert "deferred attempts never keep it" in visible(response)
    recipients = page[page.index('id="mailer-recipients"') : page.index('id="mailer-attempts"')]
    assert "alice@example.com" in recipients and "451" in recipients
    # And the list shows the subject too, and finds the row by it.
    assert cells(admin_client.get(LOG_LIST), "subject_column") == [log.subject_line]
    assert cells(admin_client.get(f"{LOG_LIST}?q=Quarterly"), "subject_column") == [
        log.subject_line
    ]


def test_an_undecodable_message_is_still_an_error_on_its_page(admin_client: Client) -> None:
    message = queue(message_data="garbage")
    page = text(admin_client.get(f"{LIST}{message.pk}/change/"))
    assert "errornote" in page and "mailer-not-kept" not in page


# -- The dashboard's words ----------------------------------------------------------------


def test_one_failed_attempt_is_singular(admin_client: Client) -> None:
    attempt = {"when_added": timezone.now(), "priority": 2, "result": RESULT_FAILURE}
    MessageLog.objects.create(**attempt, smtp_code=550, smtp_reply="no")
    assert "1 failed attempt " in visible(admin_client.get(DASHBOARD)).replace("\n", " ")
    MessageLog.objects.create(**attempt, smtp_code=550, smtp_reply="no")
    assert "2 failed attempts" in visible(admin_client.get(DASHBOARD))


def test_recent_times_say_less_than_a_minute(admin_client: Client) -> None:
    now = timezone.now()
    queue(due_at=now - datetime.timedelta(seconds=5))
    MessageLog.objects.create(
        when_added=now, priority=2, result=RESULT_FAILURE, smtp_code=550, smtp_reply="no"
    )
    Worker.objects.create(name="host:1:1", hostname="host", pid=1)
    page = visible(admin_client.get(DASHBOARD))
    assert "oldest due for less than a minute" in page
    assert page.count("less than a minute ago") == 2  # the failure and the heartbeat
    assert "0 minutes" not in page


# -- Delivery by send_mail on the dashboard -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_mail_runs_are_on_the_dashboard(admin_client: Client, smtp: Any) -> None:
    queue(plain())
    queue(plain())
    call_command("send_mail", stdout=io.StringIO())
    (run,) = DeliveryRun.objects.all()
    assert run.kind == "send_mail" and (run.sent, run.deferred, run.failed) == (2, 0, 0)
    assert run.delivered_at == run.finished_at
    response = admin_client.get(DASHBOARD)
    page = visible(response)
    assert "No worker has reported" not in page and "Nothing has delivered" not in page
    section = text(response).split('id="mailer-runs"', 1)[1].split("</section>", 1)[0]
    assert "<code>send_mail</code>" in section and run.hostname in section
    assert re.search(r"less than a minute ago</td>\s*<td class=\"mailer-number\">2</td>", section)


@pytest.mark.django_db(transaction=True)
def test_a_run_with_nothing_due_keeps_what_the_last_delivery_did(smtp: Any) -> None:
    queue(plain())
    call_command("send_mail", stdout=io.StringIO())
    delivered = DeliveryRun.objects.get()
    call_command("send_mail", stdout=io.StringIO())
    again = DeliveryRun.objects.get()
    assert again.finished_at > delivered.finished_at
    assert (again.delivered_at, again.sent) == (delivered.delivered_at, 1)


def test_a_host_whose_runs_never_had_mail_says_nothing_was_due(admin_client: Client) -> None:
    call_command("send_mail", stdout=io.StringIO())
    page = visible(admin_client.get(DASHBOARD))
    assert "send_mail" in page and "nothing was due" in page


def test_send_all_from_code_and_the_task_drain_are_reported_under_their_own_names() -> None:
    send_all()
    send_all(report_as="task")
    send_all(report_as=None)
    assert sorted(DeliveryRun.objects.values_list("kind", flat=True)) == ["send_all", "task"]


def test_runs_older_than_a_day_are_not_shown(admin_client: Client) -> None:
    long_ago = timezone.now() - datetime.timedelta(days=2)
    DeliveryRun.objects.record("send_mail", "old-host", 1, started_at=long_ago, counts=(1, 0, 0))
    DeliveryRun.objects.filter(hostname="old-host").update(finished_at=long_ago)
    page = visible(admin_client.get(DASHBOARD))
    assert "old-host" not in page
    assert "Nothing has delivered mail in the last day" in page


def test_one_row_per_kind_and_host() -> None:
    now = timezone.now()
    for counts in ((1, 0, 0), (0, 0, 0), (3, 1, 0)):
        DeliveryRun.objects.record("send_mail", "web-1", 10, started_at=now, counts=counts)
    DeliveryRun.objects.record("send_mail", "web-2", 11, started_at=now, counts=(0, 0, 0))
    rows = {r.hostname: (r.sent, r.deferred) for r in DeliveryRun.objects.all()}
    assert rows == {"web-1": (3, 1), "web-2": (0, 0)}


def test_a_paused_run_is_not_reported(settings: Any) -> None:
    settings.MAILER_PAUSE_SEND = True
    queue()
    send_all()
    assert not DeliveryRun.objects.exists()
    assert Message.objects.count() == 1

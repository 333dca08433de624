"""The queue's lists, a deferred attempt's page and the dashboard at 1366 and 1920 px wide.

On a demo of its own (the other browser tests count the demo's rows), with mail whose subjects,
addresses and replies are long. Every list column is on the page: the results table is not wider
than its container, and no cell hides content that overflows it. Each page leaves a screenshot
per width, ``fit-<width>-<page>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import TIMEOUT_MS, Demo, demo_server, expect

WIDTHS = [1366, 1920]
MESSAGES = "/admin/mailer/message/"
LOGS = "/admin/mailer/messagelog/"
DASHBOARD = "/admin/mailer/message/dashboard/"

LONG_REPLY = (
    "4.2.2 <a.very.long.mailbox.name.for.the.accounts.team@accounts-payable.example.com>: "
    "Mailbox full, the recipient's mailbox is over its storage quota; try again later, "
    "or write to the postmaster of this domain"
)
# Mail that stresses the columns: a long subject, long addresses, a long last reply.
LONG_MAIL = f"""
import datetime
from django.utils import timezone
import mailer
from mailer.models import Message, MessageLog
subject = "Your quarterly statement of account, with every invoice and credit note " * 2
to = ["a.very.long.mailbox.name.for.the.accounts.team@accounts-payable.example.com",
      "second.recipient.with.a.long.name@subsidiary.example.org",
      "third@example.net"]
mailer.send_mail(subject, "Statement attached.", None, to)
row = Message.objects.order_by("-id").first()
Message.objects.filter(pk=row.pk).update(
    retry_count=3, last_code=452, last_reply={LONG_REPLY!r},
    due_at=timezone.now() + datetime.timedelta(minutes=20))
MessageLog.objects.create(
    when_added=row.when_added, priority=row.priority, result="3", queue_id=row.pk,
    attempt=3, smtp_code=452, smtp_reply={LONG_REPLY!r}, subject_line=subject,
    recipients=[[address, "transient", 452, {LONG_REPLY!r}] for address in to])
"""

FIT = """() => {
  const box = document.querySelector('#changelist-form .results');
  const table = document.querySelector('#result_list');
  const hidden = [];
  for (const element of table.querySelectorAll('th, td, th *, td *')) {
    const style = getComputedStyle(element);
    const hides = ['hidden', 'clip'].includes(style.overflowX) || style.textOverflow === 'ellipsis';
    if (hides && element.scrollWidth > element.clientWidth + 1) {
      hidden.push(element.closest('td, th').className + ': ' + element.textContent.trim());
    }
  }
  const right = box.getBoundingClientRect().right;
  return {
    container: box.clientWidth,
    table: table.getBoundingClientRect().width,
    scrolls: box.scrollWidth - box.clientWidth,
    page: document.documentElement.scrollWidth - window.innerWidth,
    beyond: [...table.querySelectorAll('thead th')]
      .filter((th) => th.getBoundingClientRect().right > right + 1)
      .map((th) => th.textContent.trim()),
    columns: [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim()),
    hidden,
  };
}"""


@pytest.fixture(scope="module")
def long_demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_server(tmp_path_factory.mktemp("demo-fit")) as server:
        server.shell(LONG_MAIL)
        yield server


@pytest.fixture(params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def wide_page(browser: Any, long_demo: Demo, request: pytest.FixtureRequest) -> Iterator[Any]:
    width = request.param
    context = browser.new_context(base_url=long_demo.url, viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    page.width = width
    yield page
    context.close()


def shoot(page: Any, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"fit-{page.width}-{name}.png"), full_page=True)


def assert_fits(page: Any, *columns: str) -> None:
    fit = page.evaluate(FIT)
    assert fit["table"] <= fit["container"] + 1, fit
    assert fit["scrolls"] <= 1, fit
    assert fit["page"] <= 0, fit
    assert fit["beyond"] == [], fit
    assert fit["hidden"] == [], fit
    for column in columns:
        assert column in fit["columns"], fit
        expect(page.locator("#result_list thead th", has_text=column)).to_be_in_viewport()


def test_the_message_list_fits(wide_page: Any, screenshots: Path) -> None:
    page = wide_page
    page.goto(MESSAGES)
    expect(page.locator("#result_list")).to_contain_text("Your quarterly statement")
    assert_fits(page, "Next attempt", "Failed attempts", "Last reply")
    row = page.locator("#result_list tbody tr", has_text="Your quarterly statement")
    long_reply = row.locator("td.field-last_reply_column span[title]")
    expect(long_reply).to_have_attribute("title", "452 " + LONG_REPLY)
    expect(page.locator("#changelist")).not_to_contain_text("Show all")
    shoot(page, screenshots, "messages")


def test_the_log_list_fits(wide_page: Any, screenshots: Path) -> None:
    page = wide_page
    page.goto(LOGS)
    expect(page.locator("#result_list")).to_contain_text("Your quarterly statement")
    assert_fits(page, "Attempted at", "Reply", "Queue entry")
    expect(page.locator("#changelist")).not_to_contain_text("Show all")
    shoot(page, screenshots, "logs")


def test_a_filtered_list_offers_show_all_and_still_fits(wide_page: Any) -> None:
    page = wide_page
    page.goto(f"{MESSAGES}?state=failed")
    expect(page.locator("#changelist-search")).to_contain_text("Show all")
    assert_fits(page, "Next attempt", "Failed attempts", "Last reply")


def test_a_deferred_attempt_shows_its_subject_and_a_note(wide_page: Any, screenshots: Path) -> None:
    page = wide_page
    page.goto(f"{LOGS}?q=Weekly+digest")
    page.locator("#result_list tbody tr", has_text="Weekly digest").locator("th a").click()
    headers = page.locator("#mailer-headers")
    expect(headers).to_contain_text("Weekly digest")
    expect(headers.locator(".errornote")).to_have_count(0)
    expect(headers.locator(".mailer-not-kept")).to_contain_text("deferred attempts never keep it")
    expect(page.locator("#mailer-recipients")).to_contain_text("greylisted@example.net")
    expect(page.locator("#mailer-recipients")).to_contain_text("451")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shoot(page, screenshots, "deferred-log")


def test_the_dashboard_reports_the_delivery_runs(wide_page: Any, screenshots: Path) -> None:
    page = wide_page
    page.goto(DASHBOARD)
    runs = page.locator("#mailer-runs")
    expect(runs).to_contain_text("send_all")  # the demo delivered once with send_all()
    expect(runs).to_contain_text("less than a minute ago")
    expect(page.locator("#content-main")).not_to_contain_text("No worker has reported")
    expect(page.locator("#content-main")).not_to_contain_text("0 minutes")
    expect(page.locator("#mailer-last-day")).to_contain_text(re.compile(r"\d+ failed attempts?"))
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shoot(page, screenshots, "dashboard")

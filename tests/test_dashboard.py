"""The dashboard's numbers, its chart, and what it costs the database."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.admin import dashboard
from mailer.models import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    Message,
    MessageLog,
    Status,
    Worker,
)

from .samples import plain

pytestmark = pytest.mark.django_db

# Half past ten: the current hour has started, so "the last 24 hours" are 10:00 yesterday on.
NOW = datetime.datetime(2030, 3, 10, 10, 30, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
URL = "/admin/mailer/message/dashboard/"


def message(priority: int = PRIORITY_MEDIUM, **fields: Any) -> Message:
    (row,) = Message.objects.enqueue([plain()], priority=priority)
    Message.objects.filter(pk=row.pk).update(**fields)
    return row


def attempt(when: datetime.datetime, result: str, **fields: Any) -> MessageLog:
    return MessageLog.objects.create(
        when_added=when, when_attempted=when, priority=2, result=result, **fields
    )


def test_counts_by_state() -> None:
    message(due_at=NOW - HOUR)
    message(due_at=NOW)
    message(due_at=NOW + HOUR)  # scheduled
    message(status=Status.CLAIMED, due_at=None, claimed_by="w")
    message(status=Status.DEFERRED, due_at=NOW + HOUR)
    message(status=Status.DEFERRED, due_at=NOW - HOUR)  # deferred, and due again
    for _ in range(3):
        message(status=Status.DEFERRED, due_at=None)  # held
    message(status=Status.FAILED, due_at=None)
    counts = {row.state: row.count for row in dashboard.state_counts(NOW)}
    assert counts == {
        "queued": 2,
        "scheduled": 1,
        "sending": 1,
        "deferred": 2,
        "held": 3,
        "failed": 1,
    }


def test_counts_by_priority_and_the_oldest_due_message() -> None:
    message(PRIORITY_HIGH, due_at=NOW - 5 * HOUR)
    message(PRIORITY_HIGH, due_at=NOW + HOUR)
    message(PRIORITY_LOW, due_at=NOW - 2 * HOUR)
    message(PRIORITY_LOW, status=Status.DEFERRED, due_at=NOW - 9 * HOUR)
    message(PRIORITY_LOW, status=Status.DEFERRED, due_at=None)  # held: not waiting for a time
    message(PRIORITY_MEDIUM, due_at=NOW + 2 * HOUR)
    message(PRIORITY_MEDIUM, status=Status.FAILED, due_at=None)
    rows = {row.label: row for row in dashboard.priority_counts(NOW)}
    assert list(rows) == ["high", "medium", "low"]
    assert (rows["high"].waiting, rows["high"].due, rows["high"].oldest_due) == (
        2,
        1,
        NOW - 5 * HOUR,
    )
    assert (rows["medium"].waiting, rows["medium"].due, rows["medium"].oldest_due) == (1, 0, None)
    assert (rows["low"].waiting, rows["low"].due, rows["low"].oldest_due) == (2, 2, NOW - 9 * HOUR)

    data = dashboard.Dashboard(NOW, [], list(rows.values()), [], [], [])
    assert data.due == 3
    assert data.oldest_due == NOW - 9 * HOUR
    assert data.oldest_due_age == 9 * HOUR


def test_nothing_due_means_no_age() -> None:
    message(due_at=NOW + HOUR)
    data = dashboard.gather(NOW)
    assert data.due == 0
    assert data.oldest_due is None and data.oldest_due_age is None


def test_sent_and_failed_per_hour_over_the_last_day() -> None:
    attempt(NOW, RESULT_SUCCESS)
    attempt(NOW.replace(minute=0), RESULT_SUCCESS)
    attempt(NOW - HOUR, RESULT_FAILURE)
    attempt(NOW - HOUR, RESULT_DONT_SEND)  # neither sent nor failed
    attempt(NOW - 23 * HOUR, RESULT_SUCCESS)  # 11:30 yesterday: in the window
    attempt(NOW - datetime.timedelta(hours=23, minutes=31), RESULT_FAILURE)  # 10:59 yesterday
    attempt(NOW - datetime.timedelta(hours=23, minutes=31, seconds=1), RESULT_SUCCESS)  # 09:59
    attempt(NOW - 30 * HOUR, RESULT_FAILURE)
    hours = dashboard.hourly(NOW)
    assert len(hours) == 24
    assert hours[0].start == datetime.datetime(2030, 3, 9, 11, tzinfo=datetime.UTC)
    assert hours[-1].start == datetime.datetime(2030, 3, 10, 10, tzinfo=datetime.UTC)
    counts = {h.start.hour: (h.sent, h.failed) for h in hours if h.sent or h.failed}
    assert counts == {11: (1, 0), 9: (0, 1), 10: (2, 0)}


def test_most_common_failure_replies() -> None:
    for _ in range(3):
        attempt(NOW - HOUR, RESULT_FAILURE, smtp_code=451, smtp_reply="Greylisted, try later")
    attempt(NOW - 2 * HOUR, RESULT_FAILURE, smtp_code=550, smtp_reply="No such user")
    attempt(
        NOW - 3 * HOUR,
        RESULT_FAILURE,
        smtp_reply="[Errno 111] Connection refused",
        exception="ConnectionRefusedError",
    )
    long_reply = "x" * 300
    attempt(NOW - HOUR, RESULT_FAILURE, smtp_code=554, smtp_reply=long_reply + "A")
    attempt(NOW, RESULT_FAILURE, smtp_code=554, smtp_reply=long_reply + "B")
    attempt(NOW - 25 * HOUR, RESULT_FAILURE, smtp_code=421, smtp_reply="too old")
    attempt(NOW, RESULT_SUCCESS, smtp_code=250, smtp_reply="ok")
    found = [(f.count, f.code, f.exception, f.reply) for f in dashboard.common_failures(NOW)]
    assert found == [
        (3, 451, "", "Greylisted, try later"),
        (2, 554, "", "x" * dashboard.REPLY_CHARS),
        (1, 550, "", "No such user"),
        (1, None, "ConnectionRefusedError", "[Errno 111] Connection refused"),
    ]
    assert dashboard.common_failures(NOW)[1].last_seen == NOW


def test_the_top_failures_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "TOP_FAILURES", 2)
    for number in range(4):
        for _ in range(number + 1):
            attempt(NOW, RESULT_FAILURE, smtp_code=450 + number, smtp_reply="no")
    assert [f.code for f in dashboard.common_failures(NOW)] == [453, 452]


def test_workers(settings: Any) -> None:
    settings.MAILER_LEASE_SECONDS = 60
    Worker.objects.create(
        name="a:1:1", hostname="a", pid=1, heartbeat_at=NOW - datetime.timedelta(seconds=5), sent=7
    )
    Worker.objects.create(name="b:2:2", hostname="b", pid=2, heartbeat_at=NOW - 2 * HOUR)
    Worker.objects.create(name="c:3:3", hostname="c", pid=3, heartbeat_at=NOW - 30 * HOUR)
    found = [(w.name, w.alive, w.sent) for w in dashboard.workers(NOW)]
    assert found == [("a:1:1", True, 7), ("b:2:2", False, 0)]


def test_gather_makes_six_queries() -> None:
    message()
    attempt(NOW, RESULT_SUCCESS)
    with CaptureQueriesContext(connection) as queries:
        dashboard.gather(NOW)
    assert len(queries) == 6


def test_the_log_is_read_only_for_the_last_day() -> None:
    with CaptureQueriesContext(connection) as queries:
        dashboard.gather(NOW)
    log_queries = [q["sql"] for q in queries if "mailer_messagelog" in q["sql"]]
    assert len(log_queries) == 2
    for sql in log_queries:
        assert re.search(r"when_attempted[`\"]? >= ", sql), sql


def test_nice_ceiling() -> None:
    assert [dashboard.nice_ceiling(v) for v in (0, 1, 2, 3, 7, 10, 11, 49, 51, 999)] == [
        1,
        1,
        2,
        5,
        10,
        10,
        20,
        50,
        100,
        1000,
    ]


def test_chart_layout() -> None:
    start = datetime.datetime(2030, 3, 9, 11, tzinfo=datetime.UTC)
    hours = [dashboard.Hour(start + i * HOUR, 0, 0) for i in range(24)]
    hours[3] = dashboard.Hour(hours[3].start, 40, 3)
    hours[23] = dashboard.Hour(hours[23].start, 10, 0)
    chart = dashboard.chart(hours)
    assert [(b.kind, b.title) for b in chart.bars] == [
        ("sent", "14:00–15:00: 40 sent"),
        ("failed", "14:00–15:00: 3 failed"),
        ("sent", "10:00–11:00: 10 sent"),
    ]
    top = chart.y_ticks[-1]
    assert top.label == "50"
    sent = chart.bars[0]
    assert sent.y + sent.height == chart.plot_bottom
    assert sent.height == pytest.approx((chart.plot_bottom - top.position) * 40 / 50, abs=0.2)
    assert [t.label for t in chart.x_ticks] == [f"{(11 + i) % 24:02d}:00" for i in range(0, 24, 3)]
    assert all(chart.plot_left <= b.x and b.x + b.width <= chart.plot_right for b in chart.bars)
    assert "53 sent" not in chart.description and "50 sent, 3 failed" in chart.description


# -- The page ------------------------------------------------------------------------------


def test_the_page(admin_client: Client, django_assert_max_num_queries: Any) -> None:
    now = timezone.now()
    message(due_at=now - HOUR)
    message(status=Status.FAILED, due_at=None)
    attempt(now, RESULT_SUCCESS)
    attempt(now, RESULT_FAILURE, smtp_code=550, smtp_reply="Mailbox <x@example.com> unknown")
    Worker.objects.create(name="host:10:99", hostname="host", pid=10)
    # The session and the user, and the six queries of gather().
    with django_assert_max_num_queries(8):
        response = admin_client.get(URL)
    page = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in page and "<rect" in page
    assert "Mailbox &lt;x@example.com&gt; unknown" in page
    assert "host:10:99" in page and "alive" in page
    assert 'href="/admin/mailer/message/?state=failed"' in page
    assert re.search(r"oldest due for (59|1)", page)
    # No script, font or stylesheet from anywhere else.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page.split('id="content-main"', 1)[1]


def test_the_page_needs_the_view_permission(client: Client) -> None:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_message"))
    assert client.get(URL).status_code == 200

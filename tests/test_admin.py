"""The admin: pages that never fail on odd data, filters, search, permissions, actions, preview."""

from __future__ import annotations

import datetime
import json
import re
from email.message import MIMEPart
from email.mime.image import MIMEImage
from html import escape as html_escape
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer import admin as mailer_admin
from mailer.admin import display, listing
from mailer.compat import CHANGE_FORM_ACTIONS, MODERN_EMAIL
from mailer.engine import send_all
from mailer.models import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    Message,
    MessageLog,
    Status,
    Worker,
)
from mailer.queue import operations

from .admin_pages import LIST, LOG_LIST, cells, queue, rows, text
from .samples import GIF, html, plain

pytestmark = pytest.mark.django_db

HOUR = datetime.timedelta(hours=1)


def action(client: Client, name: str, ids: list[int], url: str = LIST, **extra: str) -> Any:
    data = {"action": name, "_selected_action": [str(i) for i in ids], "index": "0", **extra}
    return client.post(url, data, follow=True)


def reported(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- Pages never fail ----------------------------------------------------------------------


def test_every_page_renders(admin_client: Client, smtp: Any) -> None:
    html().send()
    plain(["refused@example.com"]).send()
    smtp.faults.refuse_rcpt["refused@example.com"] = "550 5.1.1 No such user"
    send_all()
    queue(html())
    Worker.objects.create(name="h:1:2", hostname="h", pid=1)
    pages = [
        "/admin/",
        "/admin/mailer/",
        LIST,
        LOG_LIST,
        "/admin/mailer/message/dashboard/",
        "/admin/mailer/worker/",
        "/admin/mailer/dontsendentry/",
    ]
    pages += [f"{LIST}{pk}/change/" for pk in Message.objects.values_list("pk", flat=True)]
    pages += [f"{LOG_LIST}{pk}/change/" for pk in MessageLog.objects.values_list("pk", flat=True)]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page


def test_the_app_index_links_to_the_dashboard(admin_client: Client, viewer: Client) -> None:
    assert 'href="/admin/mailer/message/dashboard/"' in text(admin_client.get("/admin/mailer/"))
    assert 'href="/admin/mailer/message/dashboard/"' in text(viewer.get("/admin/mailer/"))


ODD_DATA = [
    "",
    "garbage",
    "gAJ9cQAoWAcAAAB2ZXJzaW9ucQFLAXUu",  # a base64 pickle, as django-mailer stored
    "[]",
    "null",
    '{"v": 2}',
    '{"v": 1}',
    '{"v": 1, "subject": null, "to": "x@example.com", "headers": []}',
    '{"v": 1, "subject": {"$bytes": "AA=="}, "to": [1, {"a": []}], "headers": {"Message-ID": 5}}',
    '{"v": 1, "subject": "cut short", "body": "no end',
    "[" * 5000,
]


@pytest.mark.parametrize("data", ODD_DATA)
def test_odd_data_is_listed_and_shown(admin_client: Client, data: str) -> None:
    message = queue()
    Message.objects.filter(pk=message.pk).update(message_data=data)
    MessageLog.objects.create(
        message_data=data, when_added=timezone.now(), priority=2, result=RESULT_FAILURE
    )
    for page in (LIST, f"{LIST}{message.pk}/change/", LOG_LIST):
        assert admin_client.get(page).status_code == 200, page
    log = MessageLog.objects.get()
    assert admin_client.get(f"{LOG_LIST}{log.pk}/change/").status_code == 200
    assert admin_client.get(f"{LIST}{message.pk}/preview/").status_code == 200


# What a database can hold: valid UTF-8, and no NUL (PostgreSQL refuses it in text).
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=300))
def test_any_text_as_data_is_shown(admin_client: Client, data: str) -> None:
    Message.objects.all().delete()
    message = queue()
    Message.objects.filter(pk=message.pk).update(message_data=data)
    assert admin_client.get(LIST).status_code == 200
    assert admin_client.get(f"{LIST}{message.pk}/change/").status_code == 200


def test_list_columns(admin_client: Client) -> None:
    message = queue(plain(["a@example.com", "b@example.com", "c@example.com"]))
    undecodable = queue()
    Message.objects.filter(pk=undecodable.pk).update(message_data="garbage")
    response = admin_client.get(LIST)
    page = text(response)
    assert message.subject in page
    assert "a@example.com, b@example.com (+1)" in cells(response, "to_column")
    assert "(stored data is not valid)" in page
    assert 'class="mailer-state mailer-queued"' in page


def test_the_list_reads_only_the_start_of_big_messages(admin_client: Client) -> None:
    email = html()
    email.attach("big.bin", b"\x00" * 300_000, "application/octet-stream")
    message = queue(email)
    assert len(message.message_data) > 10 * display.SUMMARY_PREFIX
    with CaptureQueriesContext(connection) as queries:
        page = text(admin_client.get(LIST))
    assert message.subject in page
    assert "bob@example.com" in page
    column = re.compile(r"(SUBSTR(?:ING)?\()?[`\"]?mailer_message[`\"]?\.[`\"]?message_data", re.I)
    reads = [m for q in queries for m in column.finditer(q["sql"])]
    assert reads and all(m.group(1) for m in reads), [q["sql"] for q in queries]


def test_summary_of_a_prefix() -> None:
    data = json.dumps(
        {"v": 1, "class": "x", "subject": "Hi", "body": "b" * 50, "to": ["a@example.com"]}
    )
    assert display.summary(data[:60])["subject"] == "Hi"
    assert display.summary(data[:60])["to"] == []
    assert display.summary(data[: data.index("]") + 1])["to"] == ["a@example.com"]
    assert display.summary(data) == display.summary(data + "")


# -- Filters and search --------------------------------------------------------------------


def test_state_filter_matches_the_model_states(admin_client: Client) -> None:
    now = timezone.now()
    made = {
        "queued": queue(),
        "scheduled": queue(due_at=now + HOUR),
        "sending": queue(status=Status.CLAIMED, due_at=None, claimed_by="w"),
        "deferred": queue(status=Status.DEFERRED, due_at=now + HOUR),
        "held": queue(status=Status.DEFERRED, due_at=None),
        "failed": queue(status=Status.FAILED, due_at=None),
    }
    due_again = queue(status=Status.DEFERRED, due_at=now - HOUR)
    for state, message in made.items():
        listed = rows(admin_client.get(LIST, {"state": state}))
        expected = {message.pk} | ({due_again.pk} if state == "deferred" else set())
        assert set(map(int, listed)) == expected, state
        assert Message.objects.get(pk=message.pk).state == state
    due = set(map(int, rows(admin_client.get(LIST, {"state": "due"}))))
    assert due == {made["queued"].pk, due_again.pk}


def test_priority_and_mailer_filters(admin_client: Client, settings: Any) -> None:
    high = queue(priority=PRIORITY_HIGH, mailer="smtp")
    low = queue(priority=PRIORITY_LOW, mailer="")
    assert rows(admin_client.get(LIST, {"priority__exact": PRIORITY_HIGH})) == [str(high.pk)]
    if hasattr(settings, "MAILERS"):
        assert rows(admin_client.get(LIST, {"mailer": "smtp"})) == [str(high.pk)]
        assert rows(admin_client.get(LIST, {"mailer": "-"})) == [str(low.pk)]
        assert "?mailer=smtp" in text(admin_client.get(LIST))
    else:
        assert "?mailer=" not in text(admin_client.get(LIST))


def test_search_finds_recipients_subjects_and_message_ids_but_not_bodies(
    admin_client: Client,
) -> None:
    email = EmailMultiAlternatives(
        'Your "order" #1024',
        "Reset link: https://example.com/reset/SECRET-TOKEN",
        "Shop <shop@example.com>",
        ["Zoë <zoe@example.com>"],
        cc=["boss@example.com"],
    )
    email.attach_alternative("<p>also SECRET-TOKEN</p>", "text/html")
    target = queue(email)
    queue(plain(["other@example.com"]))
    msgid = target.stored_message_id
    assert msgid
    for term in (
        "zoe@example",
        "ZOË",
        "boss",
        '"order" #1024',
        "shop@",
        msgid.strip("<>"),
        "#1024",
    ):
        assert rows(admin_client.get(LIST, {"q": term})) == [str(target.pk)], term
    assert str(target.pk) in rows(admin_client.get(LIST, {"q": str(target.pk)}))
    for term in ("SECRET-TOKEN", "reset", "Reset link"):
        assert rows(admin_client.get(LIST, {"q": term})) == [], term
    assert rows(admin_client.get(LIST, {"q": "zoe order"})) == [str(target.pk)]
    assert rows(admin_client.get(LIST, {"q": "zoe other"})) == []
    assert rows(admin_client.get(LIST, {"q": "9" * 40})) == []
    assert 'id="searchbar"' in text(admin_client.get(LIST))


def test_log_search_and_queue_link(admin_client: Client, smtp: Any) -> None:
    email = plain(["dora@example.com"])
    email.send()
    (message,) = Message.objects.all()
    send_all()
    log = MessageLog.objects.get()
    assert log.queue_id == message.pk
    for term in ("dora@", message.stored_message_id, str(message.pk)):
        assert str(log.pk) in rows(admin_client.get(LOG_LIST, {"q": term})), term
    assert rows(admin_client.get(LOG_LIST, {"queue_id": message.pk})) == [str(log.pk)]
    assert rows(admin_client.get(LOG_LIST, {"q": "nobody-here"})) == []


def test_search_pattern_handles_characters_special_to_regexes_and_json(
    admin_client: Client,
) -> None:
    subject = r'a.b*c (d) [e] \f "g" $h ^i |j'
    target = queue(EmailMultiAlternatives(subject, "body", "a@example.com", ["b@example.com"]))
    queue()
    for term in ("a.b*c", "(d) [e]", r"\f", '"g"', "$h ^i |j"):
        assert rows(admin_client.get(LIST, {"q": f"'{term}'"})) == [str(target.pk)], term
    assert rows(admin_client.get(LIST, {"q": "a.b.c"})) == []


# -- Least privilege -----------------------------------------------------------------------


def test_stored_mail_cannot_be_added_edited_or_deleted(admin_client: Client) -> None:
    message = queue()
    log = MessageLog.objects.create(when_added=timezone.now(), priority=2, result=RESULT_SUCCESS)
    for url in (
        f"{LIST}add/",
        f"{LIST}{message.pk}/delete/",
        f"{LOG_LIST}add/",
        f"{LOG_LIST}{log.pk}/delete/",
        "/admin/mailer/worker/add/",
    ):
        assert admin_client.get(url).status_code == 403, url
    response = admin_client.post(
        f"{LIST}{message.pk}/change/", {"message_data": "changed", "priority": 1}
    )
    assert response.status_code == 403
    assert Message.objects.get(pk=message.pk).message_data == message.message_data
    page = text(admin_client.get(LIST))
    assert "delete_selected" not in page
    assert 'name="message_data"' not in text(admin_client.get(f"{LIST}{message.pk}/change/"))


def test_a_viewer_sees_headers_but_no_body_and_cannot_send(viewer: Client) -> None:
    message = queue(html())
    page = text(viewer.get(f"{LIST}{message.pk}/change/"))
    assert message.subject in page
    assert "bob@example.com" in page
    assert "Text part" not in page and "HTML part" not in page
    assert "<iframe" not in page
    assert "Can view the bodies" in page
    assert viewer.get(f"{LIST}{message.pk}/preview/").status_code == 403
    page = text(viewer.get(LIST))
    assert 'value="retry_now"' not in page
    assert 'value="cancel_messages"' not in page

    Message.objects.filter(pk=message.pk).update(status=Status.DEFERRED, due_at=None)
    action(viewer, "retry_now", [message.pk])
    action(viewer, "cancel_messages", [message.pk])
    after = Message.objects.get(pk=message.pk)
    assert (after.status, after.due_at) == (Status.DEFERRED, None)
    assert not MessageLog.objects.exists()


def test_a_reader_sees_the_body_and_a_sandboxed_preview(reader: Client) -> None:
    message = queue(html())
    page = text(reader.get(f"{LIST}{message.pk}/change/"))
    assert "Text part" in page
    preview = f"{LIST}{message.pk}/preview/"
    iframe = re.search(r"<iframe[^>]*>", page)
    assert iframe is not None
    assert 'sandbox=""' in iframe.group(0)
    assert f'src="{preview}"' in iframe.group(0)
    assert 'value="retry_now"' not in text(reader.get(LIST))

    response = reader.get(preview)
    assert response.status_code == 200
    assert "<p>HTML part <b>" in text(response)
    assert response["Content-Security-Policy"] == mailer_admin.PREVIEW_POLICY
    assert "script-src" not in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_log_hides_bodies_too(viewer: Client, reader: Client) -> None:
    data = queue(html()).message_data
    log = MessageLog.objects.create(
        message_data=data, when_added=timezone.now(), priority=2, result=RESULT_SUCCESS
    )
    url = f"{LOG_LIST}{log.pk}/change/"
    assert "Text part" not in text(viewer.get(url))
    assert viewer.get(f"{LOG_LIST}{log.pk}/preview/").status_code == 403
    assert "Text part" in text(reader.get(url))
    assert reader.get(f"{LOG_LIST}{log.pk}/preview/").status_code == 200


def test_preview_inlines_cid_images_and_nothing_else() -> None:
    email = html()
    email.alternatives = []
    email.attach_alternative(
        '<img src="cid:logo"><img src="https://tracker.example/p.gif">', "text/html"
    )
    image: Any
    if MODERN_EMAIL:
        image = MIMEPart()
        image.set_content(GIF, maintype="image", subtype="gif", cid="<logo>")
    else:  # DJANGO_COMPAT(<6.0): attach() takes MIMEBase parts only
        image = MIMEImage(GIF, "gif")
        image.add_header("Content-ID", "<logo>")
    email.attach(image)
    view = display.email_view(queue(email).message_data)
    preview = view.preview()
    assert 'src="data:image/gif;base64,' in preview
    assert 'src="https://tracker.example/p.gif"' not in preview  # shown as not loaded
    assert "not loaded in the preview: https://tracker.example/p.gif" in preview
    assert [a.mimetype for a in view.attachments] == ["image/gif"]


# -- Actions -------------------------------------------------------------------------------


def test_retry_now_reports_what_it_did(operator: Client) -> None:
    now = timezone.now()
    held = [queue(status=Status.DEFERRED, due_at=None) for _ in range(3)]
    sending = queue(status=Status.CLAIMED, due_at=None, claimed_by="w")
    response = action(operator, "retry_now", [m.pk for m in [*held, sending]])
    assert reported(response) == ["3 messages retried, 1 skipped because it was being sent."]
    assert Message.objects.due().count() == 3
    assert all(m.due_at and m.due_at >= now for m in Message.objects.due())


def test_cancel_leaves_a_log_row(operator: Client) -> None:
    message = queue()
    response = action(operator, "cancel_messages", [message.pk])
    assert reported(response) == ["1 message cancelled."]
    assert not Message.objects.exists()
    log = MessageLog.objects.get()
    assert (log.result, log.queue_id) == (RESULT_DONT_SEND, message.pk)
    assert log.log_message == "cancelled in the admin by operator"


def test_requeue_failed(operator: Client) -> None:
    failed = queue(status=Status.FAILED, due_at=None)
    other = queue()
    response = action(operator, "requeue_failed", [failed.pk, other.pk])
    assert reported(response) == ["1 message requeued, 1 skipped because it had not failed."]
    assert Message.objects.get(pk=failed.pk).status == Status.QUEUED


def test_send_a_copy_from_the_queue_and_the_log(operator: Client) -> None:
    message = queue(status=Status.FAILED, due_at=None)
    response = action(operator, "send_copies", [message.pk])
    (copy,) = Message.objects.exclude(pk=message.pk)
    assert reported(response) == [f'1 copy queued. <a href="{LIST}{copy.pk}/change/">Open it</a>']
    log = MessageLog.objects.create(
        message_data=message.message_data,
        when_added=timezone.now(),
        priority=2,
        result=RESULT_SUCCESS,
    )
    response = action(operator, "send_copies", [log.pk], url=LOG_LIST)
    assert reported(response)[0].startswith("1 copy queued.")
    assert Message.objects.count() == 3


def test_copies_are_limited(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operations, "MAX_COPIES", 2)
    ids = [queue().pk for _ in range(3)]
    response = action(operator, "send_copies", ids)
    assert reported(response) == ["Select at most 2 messages to copy at once (3 were selected)."]
    assert Message.objects.count() == 3


def test_big_lists_count_up_to_a_limit(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "COUNT_LIMIT", 3)
    ids = [queue(status=Status.DEFERRED, due_at=None).pk for _ in range(5)]
    page = text(operator.get(LIST))
    assert "Counting stopped at 3" in page
    response = action(operator, "retry_now", ids[:1], select_across="1")
    assert reported(response) == [
        "More than 3 messages match: narrow the list with filters, search or dates first."
    ]
    assert Message.objects.held().count() == 5
    response = action(operator, "retry_now", ids[:1], select_across="0")
    assert reported(response) == ["1 message retried."]


def test_actions_on_the_message_page(operator: Client) -> None:
    message = queue(status=Status.DEFERRED, due_at=None)
    url = f"{LIST}{message.pk}/change/"
    page = text(operator.get(url))
    data = {"CHANGE_FORM-action": "retry_now", "_selected_action": str(message.pk)}
    if not CHANGE_FORM_ACTIONS:
        # DJANGO_COMPAT(<6.1): no actions on the change form; the list has them.
        assert "retry_now" not in page
        return
    assert 'value="retry_now"' in page
    response = operator.post(url, data, follow=True)
    assert response.redirect_chain[-1][0] == url
    assert reported(response) == ["1 message retried."]
    assert Message.objects.get(pk=message.pk).status == Status.QUEUED

    response = operator.post(url, {**data, "CHANGE_FORM-action": "cancel_messages"}, follow=True)
    assert response.redirect_chain[-1][0] == LOG_LIST
    assert reported(response) == ["1 message cancelled."]


# -- The detail page -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_detail_page_shows_recipients_results_and_attempts(
    admin_client: Client, smtp: Any
) -> None:
    email = plain(["ok@example.com", "gone@example.com"])
    email.extra_headers["X-Campaign"] = "spring"
    smtp.faults.refuse_rcpt["gone@example.com"] = "550 5.1.1 No such user here"
    smtp.faults.transient_first = 1
    email.send()
    send_all()  # 451 for the whole message: deferred
    (message,) = Message.objects.all()
    Message.objects.filter(pk=message.pk).update(due_at=timezone.now())
    send_all()  # sent to ok@, refused for gone@
    first, second = MessageLog.objects.order_by("pk")
    assert (first.attempt, second.attempt) == (1, 2)
    page = text(admin_client.get(f"{LOG_LIST}{first.pk}/change/"))
    # A deferred attempt does not keep the message: a note says so, not an error, and the
    # row's own subject and Message-ID are shown.
    headers = page[page.index('id="mailer-headers"') : page.index('id="mailer-recipients"')]
    assert "errornote" not in headers and "was not kept" not in headers
    assert "deferred attempts never keep it" in headers
    assert email.subject in headers and html_escape(str(message.stored_message_id)) in headers
    recipients = page[page.index('id="mailer-recipients"') : page.index('id="mailer-attempts"')]
    assert re.search(r"gone@example.com.*?mailer-permanent.*?550.*?No such user", recipients, re.S)
    assert re.search(r"ok@example.com.*?mailer-transient.*?451", recipients, re.S)

    page = text(admin_client.get(f"{LOG_LIST}{second.pk}/change/"))
    headers = page[page.index('id="mailer-headers"') : page.index('id="mailer-recipients"')]
    msgid = html_escape(str(message.stored_message_id))
    for expected in ("X-Campaign", "spring", "Message-ID", msgid, "Subject"):
        assert expected in headers
    recipients = page[page.index('id="mailer-recipients"') : page.index('id="mailer-attempts"')]
    assert "ok@example.com" in recipients and "gone@example.com" not in recipients
    attempts = page[page.index('id="mailer-attempts"') : page.index('id="mailer-content"')]
    assert attempts.count("<tr") == 3  # header and two attempts
    assert "451" in attempts and "Try again later" in attempts
    assert "Plain body" in page


def test_a_queued_message_shows_its_recipient_results(admin_client: Client) -> None:
    message = queue(
        plain(["ok@example.com", "Later <later@example.com>"]),
        status=Status.DEFERRED,
        recipient_results={"ok@example.com": ["sent", 250, "accepted"]},
        last_code=451,
        last_reply="try later",
    )
    MessageLog.objects.create(
        when_added=message.when_added,
        priority=2,
        result=RESULT_FAILURE,
        queue_id=message.pk,
        attempt=1,
        smtp_code=451,
        smtp_reply="try later",
        recipients=[["Later <later@example.com>", "transient", 451, "try later"]],
    )
    page = text(admin_client.get(f"{LIST}{message.pk}/change/"))
    recipients = page[page.index('id="mailer-recipients"') : page.index('id="mailer-attempts"')]
    assert re.search(r"ok@example.com.*?mailer-sent.*?250.*?accepted", recipients, re.S)
    assert re.search(r"later@example.com.*?mailer-pending", recipients, re.S)
    assert "451 try later" in page


# -- The log's date hierarchy --------------------------------------------------------------


DATES = [
    datetime.datetime(2024, 12, 31, 23, 30),
    datetime.datetime(2025, 2, 3, 10),
    datetime.datetime(2025, 2, 3, 11),
    datetime.datetime(2025, 2, 17, 0, 0),
    datetime.datetime(2025, 2, 28, 23, 59, 59),
    datetime.datetime(2025, 7, 1),
]


@pytest.mark.parametrize(
    "queryset, field",
    [
        (listing.LogDatesQuerySet(model=MessageLog), "when_attempted"),
        (listing.MessageDatesQuerySet(model=Message), "when_added"),
    ],
)
def test_the_date_hierarchy_lists_the_same_dates_as_django(queryset: Any, field: str) -> None:
    zone = timezone.get_current_timezone()
    for when in DATES:
        aware = when.replace(tzinfo=zone)
        if field == "when_attempted":
            attempt = {"when_added": aware, "when_attempted": aware}
            MessageLog.objects.create(priority=2, result=RESULT_SUCCESS, **attempt)
        else:
            queue(when_added=aware)
    model = queryset.model
    for kind in ("year", "month", "day"):
        for order in ("ASC", "DESC"):
            expected = list(model.objects.datetimes(field, kind, order))
            assert list(queryset.datetimes(field, kind, order)) == expected, (kind, order)
    february = queryset.filter(**{f"{field}__year": 2025, f"{field}__month": 2})
    assert [d.day for d in february.datetimes(field, "day")] == [3, 17, 28]
    with CaptureQueriesContext(connection) as queries:
        list(queryset.datetimes(field, "day"))
    assert len(queries) == (3 if field in queryset.probed else 2)
    assert "DISTINCT DJANGO_DATETIME" not in " ".join(q["sql"] for q in queries).upper()
    assert "TRUNC" not in " ".join(q["sql"] for q in queries).upper()


def test_the_date_hierarchy_on_the_log_page(admin_client: Client) -> None:
    zone = timezone.get_current_timezone()
    for when in DATES:
        aware = when.replace(tzinfo=zone)
        MessageLog.objects.create(
            when_added=aware, when_attempted=aware, priority=2, result=RESULT_SUCCESS
        )
    page = text(admin_client.get(LOG_LIST, {"when_attempted__year": "2025"}))
    assert "when_attempted__month=2" in page and "when_attempted__month=7" in page
    assert "when_attempted__month=3" not in page

"""The admin against someone who may look at the lists but not at bodies (issue 15).

URL lookups are refused beyond the lists' own filters, and search never
looks past the top-level subject and addresses. (Malformed rows:
test_admin_malformed.py; the HTML preview: test_preview.py.)
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from django.contrib import admin
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test import Client

from mailer.models import RESULT_FAILURE, DontSendEntry, Message, MessageLog, Worker

from .admin_pages import LIST, LOG_LIST, queue, rows, text
from .samples import plain

pytestmark = pytest.mark.django_db

SECRET = "reset/4f2a-secret"
DONT_SEND_LIST = "/admin/mailer/dontsendentry/"
WORKER_LIST = "/admin/mailer/worker/"

# Every parameter each list accepts: those its filters, date hierarchy and links make.
ACCEPTED = {
    LIST: {
        "state",
        "mailer",
        "priority__exact",
        "priority__isnull",
        "when_added__year",
        "when_added__month",
        "when_added__day",
    },
    LOG_LIST: {
        "result__exact",
        "result__isnull",
        "priority__exact",
        "priority__isnull",
        "mailer",
        "refused",  # its own filter: "yes" or "no", any other value filters nothing
        "queue_id",
        "when_attempted__year",
        "when_attempted__month",
        "when_attempted__day",
    },
    DONT_SEND_LIST: {"reason__exact", "reason__isnull", "esp_name", "esp_name__isnull", "lifted"},
    WORKER_LIST: set(),
}
MODELS = {LIST: Message, LOG_LIST: MessageLog, DONT_SEND_LIST: DontSendEntry, WORKER_LIST: Worker}
LOOKUPS = [
    "",
    "__exact",
    "__iexact",
    "__contains",
    "__icontains",
    "__regex",
    "__iregex",
    "__startswith",
    "__istartswith",
    "__endswith",
    "__iendswith",
    "__in",
    "__isnull",
    "__gt",
    "__gte",
    "__lt",
    "__range",
]
# JSON key and index transforms, transforms of transforms, paths through pk.
CHAINED = [
    "recipient_results__foo",
    "recipient_results__foo__contains",
    "recipient_results__ok@example.com__0",
    "recipient_results__has_key",
    "recipient_results__has_keys",
    "recipient_results__contains",
    "recipient_results__contained_by",
    "recipients__0",
    "recipients__0__0__icontains",
    "recipients__contains",
    "message_data__0",
    "message_data__lower__contains",
    "pk__in",
    "pk",
    "id__gt",
    "when_added__year__gt",
    "when_added__date",
    "status__in",
    "last_reply__contains",
    "smtp_reply__regex",
    "nonexistent__field",
]


def secret_message() -> Message:
    """A queued password reset whose body holds ``SECRET``."""
    return queue(
        EmailMessage(
            "Password reset",
            f"Your link: https://shop.example.com/{SECRET}",
            "shop@example.com",
            ["forgetful@example.com"],
        ),
        recipient_results={"forgetful@example.com": ["transient", 451, SECRET]},
    )


def logged(message: Message, reply: str = SECRET) -> MessageLog:
    """A log row of an attempt at ``message``; its recipients' reply is shown to viewers."""
    return MessageLog.objects.create(
        message_data=message.message_data,
        when_added=message.when_added,
        priority=message.priority,
        result=RESULT_FAILURE,
        queue_id=message.pk,
        recipients=[["forgetful@example.com", "transient", 451, reply]],
    )


def parameters(url: str) -> list[str]:
    """Every field of the list's model with every lookup type, and chained paths."""
    fields = [field.name for field in MODELS[url]._meta.get_fields()]
    return [f"{field}{lookup}" for field in fields for lookup in LOOKUPS] + CHAINED


def guesses(parameter: str) -> tuple[str, str]:
    """A right and a wrong guess at what ``parameter`` would match in the secret row."""
    if parameter.endswith("__isnull"):
        return "false", "true"
    if parameter.endswith(("__regex", "__iregex")):
        return "4f2a-s", "4f2b-s"
    return SECRET[:10], "zzzz"


@pytest.mark.any_database  # the admin refuses a parameter before it queries
@pytest.mark.parametrize("url", list(ACCEPTED))
def test_a_list_accepts_only_its_own_filters(url: str, viewer: Client) -> None:
    message = secret_message()
    logged(message)
    DontSendEntry.objects.create(to_address="forgetful@example.com")
    Worker.objects.create(name="h:1:2", hostname="h", pid=1)
    for parameter in parameters(url):
        right, wrong = guesses(parameter)
        answers = [viewer.get(url, {parameter: guess}) for guess in (right, wrong)]
        if parameter in ACCEPTED[url]:
            assert all(a.status_code in (200, 302) for a in answers), parameter
        else:
            assert [a.status_code for a in answers] == [400, 400], parameter


def test_the_accepted_parameters_are_those_the_pages_link_to(
    viewer: Client, admin_client: Client
) -> None:
    """The filters, the date hierarchy and the queue entry column still work."""
    message = secret_message()
    log = logged(message)
    assert rows(viewer.get(LIST, {"state": "queued"})) == [str(message.pk)]
    assert rows(viewer.get(LIST, {"when_added__year": str(message.when_added.year)})) == [
        str(message.pk)
    ]
    assert rows(viewer.get(LOG_LIST, {"queue_id": str(message.pk)})) == [str(log.pk)]
    assert rows(viewer.get(LOG_LIST, {"result__exact": RESULT_FAILURE})) == [str(log.pk)]
    page = text(admin_client.get("/admin/mailer/message/dashboard/"))
    assert f'href="{LOG_LIST}?result__exact=3"' in page
    # A value a filter cannot take is Django's "invalid lookup" redirect, as before.
    response = viewer.get(LIST, {"priority__exact": "not-a-number"})
    assert (response.status_code, response["Location"]) == (302, f"{LIST}?e=1")


@pytest.mark.parametrize("url", [LIST, LOG_LIST])
def test_no_user_may_filter_on_stored_data(url: str, admin_client: Client) -> None:
    """Superusers included: the lists are not a way to query bodies."""
    secret_message()
    for parameter in ("message_data__contains", "message_data__regex", "message_data"):
        assert admin_client.get(url, {parameter: SECRET}).status_code == 400, parameter
    json_field = "recipient_results" if url == LIST else "recipients"
    assert admin_client.get(url, {f"{json_field}__icontains": SECRET}).status_code == 400
    # The popup's "to field" cannot point at stored data either.
    assert admin_client.get(url, {"_popup": "1", "_to_field": "message_data"}).status_code == 400


def test_the_attack_from_the_issue_recovers_nothing(viewer: Client) -> None:
    """The script that read a reset link one character at a time, with each lookup."""
    message = secret_message()
    logged(message)
    alphabet = string.ascii_lowercase + string.digits + "-/"
    for url, parameter in [
        (LIST, "message_data__contains"),
        (LIST, "message_data__regex"),
        (LOG_LIST, "message_data__contains"),
        (LOG_LIST, "recipients__icontains"),
    ]:
        known = "reset/"
        for _ in range(len(SECRET) - len(known)):
            found = [
                char
                for char in alphabet
                if str(message.pk) in rows(viewer.get(url, {parameter: known + char}))
            ]
            if not found:
                break
            known += found[0]
        assert known == "reset/", (url, parameter, known)
        statuses = {viewer.get(url, {parameter: guess}).status_code for guess in ("r", "z")}
        assert statuses == {400}


def test_a_caller_that_gives_no_request_is_refused(rf: Any) -> None:
    """Django 5.2 lets ``lookup_allowed`` be called without the request: then nothing passes."""
    model_admin = admin.site._registry[Message]
    assert model_admin.lookup_allowed("state", "queued", rf.get(LIST))
    assert not model_admin.lookup_allowed("state", "queued")


# -- Search ---------------------------------------------------------------------------------


def forwarding(inner_subject: str, inner_recipient: str) -> EmailMultiAlternatives:
    """A message carrying another as a ``message/rfc822`` attachment, and ``attrs``."""
    inner = EmailMessage(inner_subject, "inner body", "in@example.com", [inner_recipient])
    outer = EmailMultiAlternatives(
        "Forwarded for you", f"See {SECRET}", "fwd@example.com", ["boss@example.com"]
    )
    outer.attach_alternative(f'<p data-x="&quot;subject&quot;">{SECRET}</p>', "text/html")
    outer.attach("original.eml", inner, "message/rfc822")
    outer.metadata = {"subject": "metadata-subject", "to": ["meta@example.com"]}  # type: ignore[attr-defined]
    return outer


@pytest.mark.parametrize("url", [LIST, LOG_LIST])
def test_search_finds_nothing_behind_the_body_permission(url: str, viewer: Client) -> None:
    message = queue(forwarding("Quarterly figures 7Q", "cfo@inner.example"))
    queue(plain())
    if url == LOG_LIST:
        logged(message, reply="try again later")
    target = [str(message.pk)] if url == LIST else [str(MessageLog.objects.get().pk)]
    for visible in ("Forwarded for you", "fwd@example", "boss@example.com"):
        assert rows(viewer.get(url, {"q": f'"{visible}"'})) == target, visible
    for right, wrong in [
        (SECRET, "reset/0000-secret"),  # the body
        ("Quarterly figures 7Q", "Quarterly figures 8Q"),  # the attached message's subject
        ("cfo@inner.example", "ceo@inner.example"),  # its recipient
        ("in@example.com", "out@example.com"),  # its sender
        ("metadata-subject", "metadata-object"),  # attrs
        ("meta@example.com", "mesa@example.com"),
        ("inner body", "outer body"),
    ]:
        found = [rows(viewer.get(url, {"q": f'"{guess}"'})) for guess in (right, wrong)]
        assert found == [[], []], right


def test_text_in_a_body_that_imitates_a_key_is_still_body(viewer: Client) -> None:
    disguised = '","to":["victim@example.com"],"subject":"hidden'
    message = queue(EmailMessage("Visible", disguised, "a@example.com", ["b@example.com"]))
    assert rows(viewer.get(LIST, {"q": "Visible"})) == [str(message.pk)]
    for guess in ("victim@example.com", "hidden", '"to"'):
        assert rows(viewer.get(LIST, {"q": f"'{guess}'"})) == [], guess


def test_search_through_a_big_body_with_many_escapes(viewer: Client) -> None:
    """Every database's regex engine walks a long body full of escapes to the addresses."""
    body = 'a "quoted" \\ line\n' * 20_000
    message = queue(EmailMessage("Big", body, "a@example.com", ["far@example.com"]))
    assert len(message.message_data) > 400_000
    assert rows(viewer.get(LIST, {"q": "far@example.com"})) == [str(message.pk)]
    assert rows(viewer.get(LIST, {"q": "quoted"})) == []


def test_search_does_not_read_rows_of_another_layout(viewer: Client) -> None:
    """Another program's row is found by its id, never by its content."""
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        message_data='{"subject":"Other layout","to":["x@example.com"],"v":1}'
    )
    assert rows(viewer.get(LIST, {"q": "Other"})) == []
    assert rows(viewer.get(LIST, {"q": str(message.pk)})) == [str(message.pk)]


def test_a_viewer_is_told_what_search_covers(viewer: Client) -> None:
    page = text(viewer.get(LIST))
    assert "never bodies or attachments" in page

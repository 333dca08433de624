"""A malformed row shows with a warning in the admin, never as an error page (issue 15).

The rows are written straight to the table, as another program, a hand edit
or a bug would leave them: stored documents and JSON columns of unexpected
types and shapes, unknown states, attributes that break a message once set,
nesting as deep as the database takes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import JSONField, Value
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.admin import validity
from mailer.admin.listing import json_as_text
from mailer.engine import send_all
from mailer.message import codec as storage
from mailer.models import RESULT_FAILURE, Message, MessageLog
from mailer.queue.rows import results_problem

from .admin_pages import LIST, LOG_LIST, queue, text
from .samples import html

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/mailer/message/dashboard/"
INVALID = "Stored data is not valid"


def document(**changes: Any) -> str:
    """The stored data of an HTML message, with top-level keys changed as given."""
    doc = storage.to_document(html())
    doc.update(changes)
    return json.dumps(doc)


def log_of(message: Message, **fields: Any) -> MessageLog:
    """A log row of an attempt at ``message``, with the fields given."""
    row = {
        "message_data": message.message_data,
        "when_added": message.when_added,
        "priority": message.priority,
        "result": RESULT_FAILURE,
        "queue_id": message.pk,
        **fields,
    }
    return MessageLog.objects.create(**row)


def stored(value: Any) -> Any:
    """``value`` for a JSON column: None as JSON's null, not as SQL's NULL."""
    return Value(None, JSONField()) if value is None else value


def pages(message: Message) -> list[str]:
    """Every page that shows ``message`` or its log rows."""
    logs = MessageLog.objects.filter(queue_id=message.pk).values_list("pk", flat=True)
    return [
        LIST,
        f"{LIST}{message.pk}/change/",
        f"{LIST}{message.pk}/preview/",
        DASHBOARD,
        LOG_LIST,
        *(f"{LOG_LIST}{pk}/change/" for pk in logs),
        *(f"{LOG_LIST}{pk}/preview/" for pk in logs),
    ]


def assert_pages_answer(client: Client, message: Message) -> dict[str, str]:
    """Every page of ``message`` answers 200; their text by URL."""
    answers = {url: client.get(url) for url in pages(message)}
    failed = {url: r.status_code for url, r in answers.items() if r.status_code != 200}
    assert not failed, failed
    return {url: text(r) for url, r in answers.items()}


def write_json_text(model: Any, pk: int, column: str, value: str) -> None:
    """Store ``value`` as the text of a JSON column, as SQL would, without Django's encoder."""
    table = connection.ops.quote_name(model._meta.db_table)
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {connection.ops.quote_name(column)} = {cast} WHERE id = %s",
            [value, pk],
        )


def nest_as_deep_as_taken(model: Any, pk: int, column: str) -> int:
    """Write the most deeply nested JSON array the database takes in ``column``; its depth."""
    for depth in (100_000, 5_000, 999, 31):
        try:
            with transaction.atomic():
                write_json_text(model, pk, column, "[" * depth + "]" * depth)
        except DatabaseError:
            continue  # a check constraint or a stack limit of this database refused it
        return depth
    raise AssertionError("the database took no nested array at all")


# -- Rows that used to give a 500 -------------------------------------------------------------

BAD_DOCUMENTS = {
    "attrs set __dict__": document(attrs={"__dict__": {}}),
    "attrs set __class__": document(attrs={"__class__": "x"}),
    "attrs replace the alternatives": document(attrs={"alternatives": 5}),
    "attrs replace the headers": document(attrs={"extra_headers": [1]}),
    "attrs replace the recipients": document(attrs={"recipients": "x", "to": {"a": 1}}),
    "attrs replace the body": document(attrs={"body": {"nested": [1, 2]}}),
    "recipients of another shape": document(to="x@example.com", cc=[{"a": []}]),
    "headers of another shape": document(headers=[["Message-ID", 5]]),
    "an attachment of another shape": document(attachments=[5, {"content": None}]),
    "a subject nested deeply": document(subject=json.loads("[" * 500 + "]" * 500)),
    "attrs nested too deeply to decode": (
        document()[:-1] + ',"attrs":{"x":' + "[" * 100_000 + "]" * 100_000 + "}}"
    ),
    "nesting too deep to decode": "[" * 100_000 + "]" * 100_000,
    "not JSON": '{"v": 1, "subject": "cut',
    "a bad date": document(attrs={"send_at": {"$datetime": "not a date"}}),
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_a_malformed_document_is_shown_with_a_warning(
    name: str, admin_client: Client, viewer: Client
) -> None:
    message = queue(html())
    Message.objects.filter(pk=message.pk).update(message_data=BAD_DOCUMENTS[name])
    log = log_of(message, message_data=BAD_DOCUMENTS[name])
    shown = assert_pages_answer(admin_client, message)
    for url in (f"{LIST}{message.pk}/change/", f"{LOG_LIST}{log.pk}/change/"):
        assert f"{INVALID}: the message cannot be decoded." in shown[url], url
        response = viewer.get(url)
        assert response.status_code == 200
        assert f"{INVALID}: the message cannot be decoded." in text(response), url
    assert viewer.get(LIST).status_code == viewer.get(LOG_LIST).status_code == 200


def test_only_those_who_may_read_bodies_see_what_is_wrong_with_the_data(
    viewer: Client, reader: Client
) -> None:
    """The reason may quote the data (a date of attrs, here): the viewer gets the warning only."""
    message = queue(html())
    bad = document(attrs={"send_at": {"$datetime": "SECRET-7f3a"}})
    Message.objects.filter(pk=message.pk).update(message_data=bad)
    url = f"{LIST}{message.pk}/change/"
    assert f"{INVALID}: the message cannot be decoded." in text(viewer.get(url))
    assert "SECRET-7f3a" not in text(viewer.get(url))
    assert "SECRET-7f3a" in text(reader.get(url))


@pytest.mark.parametrize(
    "changes, warning",
    [
        ({"status": "zzz"}, "status &#x27;zzz&#x27; is not a state of the queue"),
        ({"status": ""}, "status &#x27;&#x27; is not a state of the queue"),
        ({"recipient_results": [1, 2]}, "recipient results are a list, not an object"),
        ({"recipient_results": stored(None)}, "recipient results are null, not an object"),
        ({"recipient_results": "x"}, "recipient results are text, not an object"),
        (
            {"recipient_results": {"bob@example.com": {"x": 1}, "ok@x": ["sent", 250, "ok"]}},
            "the recipient result for &#x27;bob@example.com&#x27; is not [result, code, reply]",
        ),
    ],
)
def test_a_malformed_queue_row_is_shown_with_a_warning(
    changes: dict[str, Any], warning: str, admin_client: Client
) -> None:
    message = queue(html())
    Message.objects.filter(pk=message.pk).update(**changes)
    shown = assert_pages_answer(admin_client, message)
    for url in (LIST, f"{LIST}{message.pk}/change/"):
        assert f"{INVALID}: {warning}" in shown[url], url


@pytest.mark.parametrize(
    "fields, warning",
    [
        ({"recipients": 5}, "recipients are a number, not a list"),
        ({"recipients": {"a": 1}}, "recipients are dict, not a list"),
        (
            {"recipients": [[1], "x"]},
            "an entry of recipients is not [address, result, code, reply]",
        ),
        ({"result": "9"}, "result &#x27;9&#x27; is not a known result"),
    ],
)
def test_a_malformed_log_row_is_shown_with_a_warning(
    fields: dict[str, Any], warning: str, admin_client: Client
) -> None:
    message = queue(html())
    log = log_of(message, **fields)
    shown = assert_pages_answer(admin_client, message)
    for url in (LOG_LIST, f"{LOG_LIST}{log.pk}/change/"):
        assert f"{INVALID}: {warning}" in shown[url], url
    # The message's page lists the attempt all the same.
    assert f'href="{LOG_LIST}{log.pk}/change/"' in shown[f"{LIST}{message.pk}/change/"]


@pytest.mark.parametrize(
    "model, column", [(Message, "recipient_results"), (MessageLog, "recipients")]
)
def test_json_nested_as_deep_as_the_database_takes(
    model: Any, column: str, admin_client: Client
) -> None:
    message = queue(html())
    log = log_of(message)
    pk = message.pk if model is Message else log.pk
    depth = nest_as_deep_as_taken(model, pk, column)
    shown = assert_pages_answer(admin_client, message)
    (stored,) = json_as_text(model.objects.filter(pk=pk), column).values_list(
        f"{column}_text", flat=True
    )
    assert stored.count("[") == depth
    if validity.stored_json(stored)[1]:  # deeper than this Python decodes
        url = LIST if model is Message else LOG_LIST
        assert "nested too deeply to be read" in shown[url]


# -- Any JSON, anywhere -----------------------------------------------------------------------

# What every database stores: text without NUL (PostgreSQL refuses it), finite numbers.
json_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=12,
)
DOCUMENT_KEYS = [
    "v", "class", "subject", "body", "from_email", "to", "cc", "bcc", "reply_to", "headers",
    "alternatives", "attachments", "content_subtype", "encoding", "mixed_subtype", "attrs",
]  # fmt: skip
ODD_ATTRIBUTES = [
    "__dict__", "__class__", "alternatives", "attachments", "extra_headers", "body", "to",
    "recipients", "connection", "encoding", "subject", "message", "send",
]  # fmt: skip
documents = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(DOCUMENT_KEYS), json_values, max_size=4).map(
        lambda changes: document(**changes)
    ),
    st.dictionaries(st.sampled_from(ODD_ATTRIBUTES) | json_text, json_values, max_size=3).map(
        lambda attrs: document(attrs=attrs)
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=documents,
    results=json_values,
    status=st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=10),
    recipients=json_values,
    result=st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=1),
)
def test_any_json_in_any_stored_column_is_shown(
    admin_client: Client, data: str, results: Any, status: str, recipients: Any, result: str
) -> None:
    Message.objects.all().delete()
    MessageLog.objects.all().delete()
    message = queue(html())
    Message.objects.filter(pk=message.pk).update(
        message_data=data, recipient_results=stored(results), status=status
    )
    log_of(message, message_data=data, recipients=stored(recipients), result=result)
    assert_pages_answer(admin_client, message)


def test_the_checks_accept_what_the_queue_writes(admin_client: Client, smtp: Any) -> None:
    """Rows written by enqueue and delivery carry no warning."""
    smtp.faults.refuse_rcpt["refused@example.com"] = "550 5.1.1 No such user"
    html(["ok@example.com", "refused@example.com"]).send()
    html(["later@example.com"]).send()
    smtp.faults.transient_first = 1
    send_all()
    send_all()
    assert MessageLog.objects.exists()
    for message in Message.objects.all():
        assert INVALID not in "".join(assert_pages_answer(admin_client, message).values())


@pytest.mark.parametrize(
    "data, warning",
    [
        (document(to="x@example.com"), f"{INVALID}: to is not a list of addresses"),
        (document(subject=["a"]), f"{INVALID}: subject is not text"),
        (document(attrs={"__dict__": {}}), f"{INVALID}: attrs would replace &#x27;__dict__&#x27;"),
        (document(attrs={"send": 1, "body": 2}), "replace &#x27;send&#x27; (and 1 more)"),
        ("garbage", "(stored data is not valid)"),
    ],
)
def test_the_list_warns_of_what_it_reads(data: str, warning: str, viewer: Client) -> None:
    """The list reads the start of each row: a problem there is shown on the row."""
    message = queue(html())
    Message.objects.filter(pk=message.pk).update(message_data=data)
    log_of(message, message_data=data)
    for url in (LIST, LOG_LIST):
        assert warning in text(viewer.get(url)), url


@pytest.mark.no_database
def test_problems_name_the_first_of_several() -> None:
    results = json.dumps({"a@x": [1, 2, 3], "b@x": {}, "c@x": ["sent", None, ""]})
    assert validity.queue_row_problems("queued", results) == [
        "the recipient result for 'a@x' (and 1 more) is not [result, code, reply]"
    ]
    assert validity.queue_row_problems("x" * 100, "{}") == [
        f"status '{'x' * 80}…' is not a state of the queue"
    ]
    assert validity.log_row_problems("1", "[1") == ["recipients: it is not JSON"]
    assert validity.attrs_problem({"attrs": {"tags": [], "metadata": {}}}) == ""


@pytest.mark.no_database
def test_a_providers_message_id_after_the_reply_is_well_formed() -> None:
    """Entries may end with the id an email service provider gave (text), nothing else."""
    sent = ["sent", 200, "sent id-1", "id-1"]
    assert validity.queue_row_problems("queued", json.dumps({"a@x": sent})) == []
    assert validity.log_row_problems("1", json.dumps([["a@x", *sent]])) == []
    assert validity.queue_row_problems("queued", json.dumps({"a@x": [*sent[:3], 7]})) == [
        "the recipient result for 'a@x' is not [result, code, reply]"
    ]
    assert validity.log_row_problems("1", json.dumps([["a@x", *sent, "more"]])) == [
        "an entry of recipients is not [address, result, code, reply]"
    ]
    assert results_problem({"a@x": sent}) is None
    assert results_problem({"a@x": [*sent[:3], None]}) is not None

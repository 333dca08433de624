"""A malformed queued row fails alone, with "stored data is not valid: ...", and the run goes on.

Rows are spoiled straight in the table, as a bug, an old version or someone with
access to the database could leave them: random JSON of any type, shape and depth
in every stored column, text that is not JSON, documents with one field gone
wrong. Each time a good message queued after the bad one must be delivered once
by the same run, against the real SMTP server, on every database.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from mailer.conf import mailers_configured
from mailer.engine import send_all
from mailer.message import codec as storage
from mailer.models import Message, MessageLog, Status

from . import processes
from .assertions import MailAssertions
from .samples import html, plain, token_of

pytestmark = pytest.mark.django_db(transaction=True)

# The property tests: few examples by default (they run on every database and Django);
# MAILER_PROPERTY_EXAMPLES=500 for a deeper look.
ROWS = settings(
    max_examples=int(os.environ.get("MAILER_PROPERTY_EXAMPLES", "20")),
    deadline=None,
    derandomize=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
NOT_VALID = "stored data is not valid: "
# Text a database stores: no NUL (PostgreSQL refuses it), no lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    scalars = st.none() | st.booleans() | numbers | text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=25,
    )


# For JSON columns, which the database parses: what it accepts.
JSON = json_values(TEXT)
# Inside message_data, a text column holding JSON text, strings may hold anything JSON can
# escape -- NUL and lone surrogates included -- which must never be written back raw.
ANY_JSON = json_values(st.text(max_size=40))
DEPTH = st.one_of(
    st.integers(1, 40), st.integers(900, 1100), st.sampled_from([5000, 10_000, 30_000])
)
# As deep as the database lets a JSON column be, past Python's recursion limit (about 1,000
# on Python 3.11, under 10,000 on 3.13): SQLite refuses JSON nested deeper than 1,000 levels,
# MariaDB deeper than 32, PostgreSQL (by its stack depth) about 10,000.
DEEPEST_JSON = {"mysql": 30, "sqlite": 999}.get(connection.vendor, 10_000)


def nested(depth: int, kind: str = "list") -> str:
    """JSON text nested ``depth`` deep (written as text: Python could not build it)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def write(pk: int, column: str, text: str) -> bool:
    """Write ``text`` into ``column`` of row ``pk`` as it is; False if the database refuses it.

    JSON columns get it as JSON text (PostgreSQL parses it into jsonb; the others check
    it is valid JSON, and MariaDB and SQLite refuse documents nested too deep).
    """
    quote = connection.ops.quote_name
    json_column = Message._meta.get_field(column).get_internal_type() == "JSONField"
    value = "CAST(%s AS jsonb)" if json_column and connection.vendor == "postgresql" else "%s"
    sql = f"UPDATE {quote(Message._meta.db_table)} SET {quote(column)} = {value} WHERE id = %s"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [text, pk])
    except DatabaseError:
        return False
    return True


def document_with(row: Message, field: str, value: Any) -> str:
    """``row``'s stored document with ``field`` set to ``value`` (``attrs.x``: an extra
    attribute; ``attachment.x``: a key of the first attachment)."""
    doc = json.loads(row.message_data)
    if field.startswith("attrs."):
        doc.setdefault("attrs", {})[field.split(".", 1)[1]] = value
    elif field.startswith("attachment."):
        doc["attachments"][0][field.split(".", 1)[1]] = value
    else:
        doc[field] = value
    return json.dumps(doc)


def _document_fields() -> list[str]:
    """Every key of a stored document with everything set, and some nested ones."""
    full = html()
    full.attach("notes.txt", "some text\n", "text/plain")
    full.content_subtype, full.encoding = "html", "utf-8"
    full.tags = ["newsletter"]  # type: ignore[attr-defined]  # an Anymail-style extra
    nested = ["attrs.tags", "attrs.send_at", "attachment.mimetype", "attachment.filename"]
    return [*sorted(storage.to_document(full)), *nested, "attachment.content"]


DOCUMENT_FIELDS = _document_fields()


class Runs(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def bad_then_good(self) -> tuple[Message, str, str]:
        """A queued row to spoil, and a good message queued after it (same priority)."""
        Message.objects.all().delete()
        MessageLog.objects.all().delete()
        self.server.reset()
        bad = html()
        bad.attach("notes.txt", "some text\n", "text/plain")
        (row,) = Message.objects.enqueue([bad])
        good = plain()
        Message.objects.enqueue([good])
        return row, token_of(bad), token_of(good)

    def run_and_check(self, row: Message, bad: str, good: str, *, invalid: bool) -> None:
        """One run: the good message is delivered once; the bad row (if ``invalid``) failed."""
        send_all()
        self.assert_delivered_once(good)
        assert not Message.objects.filter(status=Status.CLAIMED).exists(), "a claim was left"
        if invalid:
            failed = Message.objects.get(pk=row.pk)
            assert failed.status == Status.FAILED, f"{failed.status}: {failed.last_reply}"
            assert failed.last_reply.startswith(NOT_VALID), failed.last_reply
            assert failed.last_code is None
            self.assert_not_delivered(bad)
            log = MessageLog.objects.get(queue_id=row.pk)
            assert log.log_message.startswith(NOT_VALID) and log.result == "3"


class TestTheIssuesRows(Runs):
    """The rows the security report found stopping all delivery."""

    @pytest.mark.parametrize(
        "column, text",
        [
            ("message_data", None),  # attrs: {"recipients": "x"}, below
            ("recipient_results", "[1, 2]"),
            ("recipient_results", '"alice@example.com"'),
            ("recipient_results", '{"alice@example.com": 7}'),
            ("recipient_results", "null"),
            ("recipient_results", nested(DEEPEST_JSON)),
            ("message_data", nested(100_000)),
            ("message_data", nested(990, "object")),
            ("message_data", "not JSON at all"),
            ("message_data", "[]"),
            ("mailer", "gone-alias"),
        ],
        ids=[
            "attrs.recipients",
            "results list",
            "results text",
            "results value",
            "results null",
            "results nested",
            "data nested",
            "data objects nested",
            "data not JSON",
            "data list",
            "unknown mailer",
        ],
    )
    def test_fails_alone(self, column: str, text: str | None) -> None:
        row, bad, good = self.bad_then_good()
        if text is None:
            text = document_with(row, "attrs.recipients", "x")
        if not write(row.pk, column, text):
            pytest.fail(f"the database refused {column} = {text[:40]!r}")
        self.run_and_check(row, bad, good, invalid=True)

    @pytest.mark.parametrize(
        "field, value",
        [
            ("attrs.__dict__", {"to": 1}),
            ("attrs.message", "not a method"),
            ("attrs.to", "x@example.com"),
            ("headers", {"X-Tag": "a\r\nBcc: victim@example.com"}),
            ("subject", json.loads(nested(50))),
            ("to", ["not an address\r\nRCPT TO:<victim@example.com>"]),
            ("alternatives", [["<p>x</p>", "text/html\r\nX-Injected: 1"]]),
            ("attachment.mimetype", "no slash"),
            ("attachment.content", {"$bytes": "!!not base64!!"}),
            ("attachment.content", {"$unknown": "tag"}),
            ("encoding", "no-such-charset"),
            ("to", ["nul\x00@example.com"]),
            ("cc", ["lone\udc80@example.com"]),
            ("headers", {"Message-ID": "<a\x00b@example.com>"}),
            ("subject", "\ud800 \x00"),
        ],
        ids=repr,
    )
    def test_a_document_with_one_field_wrong_fails_alone(self, field: str, value: Any) -> None:
        row, bad, good = self.bad_then_good()
        assert write(row.pk, "message_data", document_with(row, field, value))
        self.run_and_check(row, bad, good, invalid=True)

    def test_send_mail_in_a_real_process_exits_0_and_delivers_the_rest(self) -> None:
        row, bad, good = self.bad_then_good()
        assert write(row.pk, "recipient_results", "[1, 2]")
        done = processes.run(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("sent 1, deferred 0, failed 1 in ")
        self.assert_delivered_once(good)
        self.assert_failed_with(bad, None, NOT_VALID + "recipient_results is a list")


def is_results(value: Any) -> bool:
    """The shape recipient_results must have: address -> [verdict, code, text]."""
    verdicts = {"sent", "transient", "permanent", "skipped"}
    return isinstance(value, dict) and all(
        isinstance(v, list)
        and len(v) == 3
        and isinstance(v[0], str)
        and v[0] in verdicts
        and (v[1] is None or type(v[1]) is int)
        and isinstance(v[2], str)
        for v in value.values()
    )


class TestRandomRows(Runs):
    """Property tests: whatever a column holds, the good message after it goes out once."""

    @ROWS
    @given(value=JSON)
    @example(value=[1, 2])
    @example(value={"alice@example.com": ["sent", "250", "ok"]})
    def test_random_json_in_recipient_results(self, value: Any) -> None:
        row, bad, good = self.bad_then_good()
        assert write(row.pk, "recipient_results", json.dumps(value))
        self.run_and_check(row, bad, good, invalid=not is_results(value))

    @ROWS
    @given(depth=DEPTH, kind=st.sampled_from(["list", "object"]))
    def test_deep_json_in_recipient_results(self, depth: int, kind: str) -> None:
        row, bad, good = self.bad_then_good()
        if not write(row.pk, "recipient_results", nested(depth, kind)):
            event("the database refuses JSON this deep")
            return
        self.run_and_check(row, bad, good, invalid=True)

    @ROWS
    @given(value=ANY_JSON.filter(lambda v: not isinstance(v, dict)))
    def test_random_json_of_the_wrong_type_in_message_data(self, value: Any) -> None:
        row, bad, good = self.bad_then_good()
        assert write(row.pk, "message_data", json.dumps(value))
        self.run_and_check(row, bad, good, invalid=True)

    @ROWS
    @given(
        value=st.dictionaries(st.text(max_size=10), ANY_JSON, max_size=6),
        version=st.sampled_from([None, 1]),
    )
    def test_random_objects_in_message_data(self, value: dict[str, Any], version: Any) -> None:
        row, bad, good = self.bad_then_good()
        if version is not None:
            value["v"] = version
        assert write(row.pk, "message_data", json.dumps(value))
        self.run_and_check(row, bad, good, invalid=True)

    @ROWS
    @given(text=TEXT, depth=DEPTH)
    def test_invalid_or_deep_json_text_in_message_data(self, text: str, depth: int) -> None:
        row, bad, good = self.bad_then_good()
        spoiled = text + nested(depth)[: depth + 1]  # opened, never closed: never valid JSON
        assert write(row.pk, "message_data", spoiled)
        self.run_and_check(row, bad, good, invalid=True)

    @ROWS
    @given(field=st.sampled_from(DOCUMENT_FIELDS), value=ANY_JSON)
    def test_a_document_field_holding_random_json(self, field: str, value: Any) -> None:
        """Some of these still make a message that can be sent (a text body, a known
        class): then it is sent, or refused by the server; never a crashed run."""
        row, _bad, good = self.bad_then_good()
        assert write(row.pk, "message_data", document_with(row, field, value))
        note(f"{field} = {value!r}")
        send_all()
        self.assert_delivered_once(good)
        left = Message.objects.filter(pk=row.pk).first()
        if left is not None:  # not sent: failed or deferred with a reply
            assert left.status in (Status.FAILED, Status.DEFERRED), left.status
            assert left.last_reply, "a failed attempt without a reply"
            if left.last_code is None and left.status == Status.FAILED:
                assert left.last_reply.startswith(NOT_VALID), left.last_reply

    @ROWS
    @given(
        column=st.sampled_from(["mailer", "last_reply", "claimed_by", "status"]),
        text=TEXT,
    )
    def test_random_text_in_the_other_columns(self, column: str, text: str) -> None:
        row, bad, good = self.bad_then_good()
        text = text[: Message._meta.get_field(column).max_length]
        assert write(row.pk, column, text)
        send_all()
        self.assert_delivered_once(good)
        left = Message.objects.filter(pk=row.pk).first()
        usable = ("", "smtp") if mailers_configured() else ("",)
        if column == "mailer" and text not in usable:
            assert left is not None and left.last_reply.startswith(NOT_VALID)
        elif column == "status" and text not in ("queued", "deferred"):
            assert left is not None and left.status == text  # never due: left alone
        else:
            self.assert_delivered_once(bad)

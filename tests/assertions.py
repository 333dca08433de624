"""Domain assertions shared by the tests: delivered once, queued, failed with a reply."""

from __future__ import annotations

import re

from django.core.mail import EmailMessage
from django.test.utils import CaptureQueriesContext

from mailer.models import Message, MessageLog, Status

from .samples import token_of
from .smtp import Received, SMTPServer


class MailAssertions:
    """Mix into a test class; needs ``self.server`` (an SMTPServer)."""

    server: SMTPServer

    def assert_delivered_once(self, message: EmailMessage | str) -> Received:
        token = message if isinstance(message, str) else token_of(message)
        copies = self.server.by_token(token)
        assert len(copies) == 1, f"{token} arrived {len(copies)} times, expected once"
        return copies[0]

    def assert_not_delivered(self, message: EmailMessage | str) -> None:
        token = message if isinstance(message, str) else token_of(message)
        copies = self.server.by_token(token)
        assert not copies, f"{token} arrived {len(copies)} times, expected never"

    def assert_each_delivered_once(self, messages: list[EmailMessage] | list[str]) -> None:
        tokens = [m if isinstance(m, str) else token_of(m) for m in messages]
        arrived = self.server.tokens()
        missing = [t for t in tokens if t not in arrived]
        doubled = sorted({t for t in arrived if arrived.count(t) > 1})
        assert not missing, f"{len(missing)} never arrived, e.g. {missing[:3]}"
        assert not doubled, f"{len(doubled)} arrived more than once, e.g. {doubled[:3]}"

    def assert_queued_as(
        self,
        message: EmailMessage | str,
        *,
        priority: int | None = None,
        mailer: str | None = None,
        status: str | None = None,
    ) -> Message:
        """The one queued row holding ``message``, checked for what is given."""
        token = message if isinstance(message, str) else token_of(message)
        row = find(token)
        if priority is not None:
            assert row.priority == priority, f"{token} queued at {row.priority}, not {priority}"
        if mailer is not None:
            assert row.mailer == mailer, f"{token} queued for mailer {row.mailer!r}, not {mailer!r}"
        if status is not None:
            assert row.status == status, f"{token} is {row.status}, expected {status}"
        return row

    def assert_nothing_queued(self) -> None:
        left = Message.objects.count()
        assert left == 0, f"{left} messages queued, expected none"

    def assert_queued(self, count: int) -> None:
        waiting = Message.objects.filter(status__in=[Status.QUEUED, Status.CLAIMED]).count()
        assert waiting == count, f"{waiting} messages queued, expected {count}"

    def assert_queue_empty(self) -> None:
        left = list(Message.objects.values_list("status", "last_reply"))
        assert not left, f"queue still holds {left[:5]}"

    def assert_failed_with(
        self, message: EmailMessage | str, code: int | None, text: str = ""
    ) -> Message:
        token = message if isinstance(message, str) else token_of(message)
        row = find(token)
        assert row.status == Status.FAILED, f"{token} is {row.status}, expected failed"
        assert row.last_code == code, f"{token} failed with {row.last_code}, expected {code}"
        assert text in row.last_reply, f"{text!r} not in {row.last_reply!r}"
        return row

    def assert_deferred_with(
        self, message: EmailMessage | str, code: int | None, text: str = ""
    ) -> Message:
        token = message if isinstance(message, str) else token_of(message)
        row = find(token)
        assert row.status == Status.DEFERRED, f"{token} is {row.status}, expected deferred"
        assert row.last_code == code, f"{token} deferred with {row.last_code}, expected {code}"
        assert text in row.last_reply, f"{text!r} not in {row.last_reply!r}"
        assert row.due_at is not None, "a deferred message must have a next attempt"
        return row

    def assert_logged(
        self, message: EmailMessage | str, result: str, count: int = 1
    ) -> list[MessageLog]:
        token = message if isinstance(message, str) else token_of(message)
        logs = [
            log
            for log in MessageLog.objects.order_by("pk")
            if token in (log.message_data or log.log_message or "")
            or (log.message_id and log.message_id in _ids_for(token))
        ]
        matching = [log for log in logs if log.result == result]
        assert len(matching) == count, (
            f"{token}: {len(matching)} log rows with result {result}, expected {count}"
        )
        return matching


def find(token: str) -> Message:
    rows = [m for m in Message.objects.all() if token in m.message_data]
    assert len(rows) == 1, f"{len(rows)} queued rows hold {token}"
    return rows[0]


def _ids_for(token: str) -> set[str]:
    return {m.stored_message_id or "" for m in Message.objects.all() if token in m.message_data}


def statements(
    queries: CaptureQueriesContext, verb: str, table: str = "mailer_message"
) -> list[str]:
    """The captured SQL statements that start with ``verb`` and name the table ``table``."""
    name = re.compile(rf"\b{re.escape(table)}\b", re.IGNORECASE)
    found = []
    for query in queries.captured_queries:
        sql = query["sql"].replace('"', "").replace("`", "").lstrip()
        if sql.upper().startswith(verb.upper()) and name.search(sql):
            found.append(query["sql"])
    return found

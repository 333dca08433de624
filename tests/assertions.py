"""Domain assertions shared by the tests: delivered once, queued, failed with a reply."""

from __future__ import annotations

import contextlib
import email.policy
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.headerregistry import (
    AddressHeader,
    ContentDispositionHeader,
    ContentTypeHeader,
    DateHeader,
)
from email.message import EmailMessage as ParsedMessage
from email.parser import BytesParser
from email.utils import parseaddr
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test.utils import CaptureQueriesContext

from mailer import compat
from mailer.message import codec as storage
from mailer.message.render import render, unsupported
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

    def assert_each_delivered(self, messages: list[EmailMessage] | list[str]) -> None:
        """Every message arrived, at least once (a crash may have sent some twice)."""
        tokens = [m if isinstance(m, str) else token_of(m) for m in messages]
        arrived = set(self.server.tokens())
        missing = [t for t in tokens if t not in arrived]
        assert not missing, f"{len(missing)} never arrived, e.g. {missing[:3]}"

    def assert_sent_again_only_what_was_in_flight(
        self, kills: list[Kill], *, at_most: int, per_connection: int | None = None
    ) -> list[list[Received]]:
        """Copies sent again came from the crash window of a kill, within the bounds.

        Each copy after the first is put down to the kill of the process that sent
        the copy before it (whose result was lost): the first kill after that
        copy's connection said EHLO. At most ``at_most`` per kill;
        with ``per_connection``, at most that many per connection per kill, each
        in flight at the kill (its "." read, no reply given) or the last message
        its connection delivered before the kill. Returns the lost copies per kill.
        """
        lost: list[list[Received]] = [[] for _ in kills]
        with self.server.lock:
            received = sorted(self.server.received, key=lambda r: r.data_at)
        copies: dict[str, list[Received]] = {}
        for copy in received:
            if copy.token:
                copies.setdefault(copy.token, []).append(copy)
        for token, sent in copies.items():
            for before in sent[:-1]:
                after = [n for n, kill in enumerate(kills) if kill.at > before.hello_at]
                assert after, (
                    f"{token} was sent again with no kill since its last copy: copies at "
                    f"{[(c.data_at, c.peer) for c in sent]}, kills at {[k.at for k in kills]}"
                )
                lost[after[0]].append(before)
        for n, (kill, again) in enumerate(zip(kills, lost, strict=True)):
            assert len(again) <= at_most, (
                f"kill {n}: {len(again)} sent again, at most {at_most}: "
                f"{[c.token for c in again]} (in flight: {kill.in_flight})"
            )
            if per_connection is None:
                continue
            last = {}
            for copy in received:
                if copy.hello_at < kill.at:  # a connection of the killed process, or before
                    last[copy.peer] = copy.token
            window = set(kill.in_flight.values()) | set(last.values())
            for copy in again:
                mates = [c for c in again if c.peer == copy.peer]
                assert len(mates) <= per_connection, (
                    f"kill {n}: {len(mates)} sent again from one connection: "
                    f"{[c.token for c in mates]}"
                )
                assert copy.token in window, (
                    f"kill {n}: {copy.token} sent again, neither in flight nor the last "
                    f"delivered on its connection ({window})"
                )
        return lost

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

    def assert_delivered_intact(self, message: EmailMessage) -> ParsedMessage:
        """``message`` arrived once, to each of its recipients once, with all it held.

        Compares what the server received, parsed, with the message as given:
        subject, addresses, extra headers, body, alternatives and attachments
        (file name, type and content). Bcc recipients get the message but are
        named in no header.
        """
        received = self.assert_delivered_once(message)
        parsed = received.message
        assert _unfolded(parsed["Subject"]) == _unfolded(message.subject)
        overrides = {name.lower() for name in message.extra_headers}
        for header, addresses in (
            ("From", [message.from_email]),
            ("To", message.to),
            ("Cc", message.cc),
            ("Reply-To", message.reply_to),
        ):
            if header.lower() not in overrides:
                assert _mailboxes(parsed.get_all(header, [])) == _mailboxes(addresses), header
        for name, value in message.extra_headers.items():
            if name.lower() in _ADDRESS_HEADERS:
                assert _mailboxes(parsed.get_all(name, [])) == _mailboxes([value]), name
            else:
                assert _unfolded(parsed[name]) == _unfolded(value), name
        assert "Bcc" not in parsed
        expected = sorted({_addr_spec(a) for a in message.recipients()})
        assert sorted(_addr_spec(a) for a in received.rcpt_tos) == expected
        assert len(received.rcpt_tos) == len(expected), "a recipient was sent two copies"

        body = parsed.get_body(("plain",) if message.content_subtype == "plain" else ("html",))
        assert body is not None
        assert _text(body.get_content()) == _text(message.body)
        if isinstance(message, EmailMultiAlternatives):
            for content, mimetype in message.alternatives:
                parts = [p for p in parsed.walk() if p.get_content_type() == mimetype]
                assert parts, f"the {mimetype} alternative is missing"
                assert _same_content(parts[0].get_content(), content), mimetype
        sent = {part.get_filename(): part for part in parsed.iter_attachments()}
        assert len(sent) == len(message.attachments), f"attachments sent: {list(sent)}"
        for attachment in message.attachments:
            if isinstance(attachment, tuple):
                filename, content, mimetype = attachment
                assert filename in sent, f"attachment {filename!r} is missing"
                assert sent[filename].get_content_type() == mimetype
                assert _same_content(sent[filename].get_content(), content), filename
        return parsed

    @contextlib.contextmanager
    def refused_at_enqueue(
        self, exception: type[BaseException], match: str | None = None
    ) -> Iterator[pytest.ExceptionInfo[Any]]:
        """The block raises ``exception`` (matching ``match``) and leaves nothing queued."""
        with pytest.raises(exception, match=match) as info:
            yield info
        self.assert_queue_empty()
        assert not MessageLog.objects.exists(), "a refused message left a log row"

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

    def assert_queued_once_with_key(self, key: str) -> Message:
        """The one message in the queue with idempotency key ``key``."""
        rows = list(Message.objects.filter(idempotency_key=key))
        assert len(rows) == 1, f"{len(rows)} messages queued with key {key!r}, expected one"
        return rows[0]

    def assert_duplicates_logged(
        self, records: list[logging.LogRecord], key: str, times: int = 1
    ) -> None:
        """The queue logged ``times`` "duplicate" lines naming ``key``."""
        lines = [
            record.getMessage()
            for record in records
            if record.name == "mailer.queue" and record.getMessage().startswith("duplicate")
        ]
        named = [line for line in lines if repr(key) in line]
        assert len(named) == times, f"duplicate lines for {key!r}: {named}, expected {times}"

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


class RenderAssertions:
    """Mix into a test class: the renderer against Django, read back by the standard library."""

    def assert_renders_as_django(self, message: EmailMessage) -> bytes:
        """Our bytes for stored ``message`` read back as what Django sends for it today.

        Both renderings are parsed with ``email.policy.default``: every part
        has the same header names in the same order with the same decoded
        values (addresses, MIME types and parameters as parsed; the boundary
        aside), the same MIME tree and the same decoded payload bytes. Ours
        also parse without a defect and have no line over 998 octets, and
        name exactly the mailboxes ``message`` gives.
        """
        doc = stored(message)
        ours = render(doc)
        assert ours is not None, f"not rendered: {unsupported(doc)}"
        self.assert_same_reading(ours, djangos(doc), message)
        return ours

    def assert_renders_as_django_or_defers(self, message: EmailMessage) -> bytes | None:
        """As :meth:`assert_renders_as_django`, or None where the renderer leaves it to Django."""
        doc = stored(message)
        ours = render(doc)
        if ours is not None:
            self.assert_same_reading(ours, djangos(doc), message)
        return ours

    def assert_same_reading(
        self, ours: bytes, theirs: bytes, message: EmailMessage | None = None
    ) -> None:
        """``ours`` reads back as ``theirs``.

        Python's folder (Django 6) mangles some long display names: it may
        drop the blank between two encoded words (CPython gh-144156), add
        one, or glue an encoded word to a quoted one. So where a From, To,
        Cc or Reply-To of ours reads otherwise than Django's, ours must name
        exactly the mailboxes ``message`` gives, and Django's must not.
        """
        self.assert_well_formed(ours)
        mine, django = anatomy(ours), anatomy(theirs)
        if message is not None:
            given = given_addresses(message)
            sent, djangos_ = dict(mine[0]), dict(django[0])
            for name in given:
                if sent.get(name) != djangos_.get(name):
                    assert sent.get(name) == given[name], f"{name}: {sent.get(name)!r} sent"
                    assert djangos_.get(name) != given[name]
            django = (
                tuple((n, sent.get(n, v) if n in given else v) for n, v in django[0]),
                django[1],
            )
        difference = _first_difference(mine, django, "message")
        assert difference is None, (
            f"{difference}\n--- ours:\n{_head(ours)}\n--- Django:\n{_head(theirs)}"
        )

    def assert_well_formed(self, data: bytes) -> None:
        """``data`` parses with no defect anywhere, and no line passes 998 octets."""
        longest = max(len(line) for line in data.split(b"\r\n"))
        assert longest <= 998, f"a line of {longest} octets"
        assert b"\n" not in data.replace(b"\r\n", b""), "a bare line feed"
        assert b"\r" not in data.replace(b"\r\n", b""), "a bare carriage return"
        parsed = BytesParser(policy=email.policy.default).parsebytes(data)
        for part in parsed.walk():
            assert not part.defects, f"{part.get_content_type()} part: {part.defects}"
            for name, value in part.items():
                assert not value.defects, f"{name}: {value.defects} in {str(value)!r}"


def given_addresses(message: EmailMessage) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """The mailboxes of From, To, Cc and Reply-To that ``message`` gives, as Python reads
    them from its strings (domains in IDNA); a header without any is left out."""
    given = {
        "From": message.extra_headers.get("From", message.from_email),
        "To": message.extra_headers.get("To", ", ".join(message.to)),
        "Cc": message.extra_headers.get("Cc", ", ".join(message.cc)),
        "Reply-To": message.extra_headers.get("Reply-To", ", ".join(message.reply_to)),
    }
    found = {}
    for name, text in given.items():
        boxes = AddressHeader.value_parser(str(text)).all_mailboxes
        if boxes:
            found[name] = tuple(
                (box.display_name or "", box.local_part, _idna(box.domain or "")) for box in boxes
            )
    return found


def stored(message: EmailMessage) -> dict[str, Any]:
    """The document the queue stores for ``message``, as read back from its JSON."""
    return dict(json.loads(storage.encode(message)))


def djangos(doc: dict[str, Any]) -> bytes:
    """What the transport sends today for a stored document: Django's rendering of it."""
    return compat.render(storage.from_document(doc))


def anatomy(data: bytes) -> tuple[Any, ...]:
    """A message as the standard library reads it: per part, (name, value) headers and content."""
    return _anatomy(BytesParser(policy=email.policy.default).parsebytes(data))


def forwarded(reading: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The anatomies of the messages forwarded (message/rfc822) in an anatomy, in order."""
    headers, content = reading
    if not isinstance(content, tuple):
        return []
    if dict(headers).get("Content-Type", ("",))[0] == "message/rfc822":
        return [content[0], *forwarded(content[0])]
    return [found for part in content for found in forwarded(part)]


def _anatomy(part: Any) -> tuple[Any, ...]:
    headers = tuple((name, _reading(value)) for name, value in part.items())
    if part.is_multipart():  # multipart/* and message/rfc822
        return headers, tuple(_anatomy(sub) for sub in part.get_payload())
    return headers, part.get_payload(decode=True)


def _reading(value: Any) -> Any:
    if isinstance(value, AddressHeader):
        boxes = value._parse_tree.all_mailboxes
        return tuple((_display_name(box), box.local_part, box.domain) for box in boxes)
    if isinstance(value, ContentTypeHeader):
        params = {k: v for k, v in value.params.items() if k != "boundary"}
        return value.content_type, params
    if isinstance(value, ContentDispositionHeader):
        return value.content_disposition, dict(value.params)
    if isinstance(value, DateHeader):
        return value.datetime
    return str(value)


def _display_name(mailbox: Any) -> str:
    """A mailbox's display name read as RFC 2047 6.2 says.

    Python's parser keeps a blank between two encoded words of a name (and
    collapses runs of blanks inside one); RFC 2047 drops the blank between
    them, which is what lets a long name be split over several words.
    """
    for token in mailbox:
        if token.token_type != "name-addr":
            continue
        for display in token:
            if display.token_type != "display-name":
                continue
            name, previous = "", False
            words = [word for word in display if word.token_type != "cfws"]
            for index, word in enumerate(words):
                encoded = word.token_type == "atom" and any(
                    part.token_type == "encoded-word" for part in word
                )
                if index and not (encoded and previous):
                    name += " "
                name += _word_text(word)
                previous = encoded
            return name
    return ""


def _idna(domain: str) -> str:
    return domain if domain.isascii() else domain.encode("idna").decode("ascii")


def _word_text(word: Any) -> str:
    if word.token_type == "quoted-string":
        bare = next(part for part in word if part.token_type == "bare-quoted-string")
        return "".join(str(part) for part in bare)
    return "".join(str(part) for part in word if part.token_type != "cfws")


def _first_difference(ours: Any, theirs: Any, where: str, nested: bool = False) -> str | None:
    """Where two anatomies first differ, said in words; None if they are equal.

    In a forwarded message (``nested``) Django 6's folder may lose a blank
    between encoded words or add one (CPython gh-144156 and kin), which
    ``compat.render`` works around at the top level only: a header of
    Django's that differs from ours in blanks alone is that bug, not a
    difference (``test_render`` checks those headers of ours against the
    forwarded message).
    """
    if ours == theirs:
        return None
    (my_headers, my_content), (their_headers, their_content) = ours, theirs
    names = [n for n, _ in my_headers], [n for n, _ in their_headers]
    if names[0] != names[1]:
        return f"{where}: headers {names[0]} != Django's {names[1]}"
    for (name, mine), (_, django) in zip(my_headers, their_headers, strict=True):
        if mine != django and not (nested and _only_blanks_differ(mine, django)):
            return f"{where}, {name}: {mine!r} != Django's {django!r}"
    if isinstance(my_content, tuple) and isinstance(their_content, tuple):
        if len(my_content) != len(their_content):
            return f"{where}: {len(my_content)} parts != Django's {len(their_content)}"
        forwarded = nested or dict(my_headers).get("Content-Type", ("",))[0] == "message/rfc822"
        for index, (mine, django) in enumerate(zip(my_content, their_content, strict=True)):
            found = _first_difference(mine, django, f"{where} > part {index + 1}", forwarded)
            if found:
                return found
        return None
    if my_content == their_content:
        return None
    return f"{where}: content {_short(my_content)} != Django's {_short(their_content)}"


def _only_blanks_differ(mine: Any, django: Any) -> bool:
    """Do two header readings (text, or names of the same mailboxes) differ in blanks only?"""
    if isinstance(mine, str) and isinstance(django, str):
        return django.replace(" ", "") == mine.replace(" ", "")
    if isinstance(mine, tuple) and isinstance(django, tuple) and len(mine) == len(django):
        return all(
            a == b or (a[1:] == b[1:] and _only_blanks_differ(a[0], b[0]))
            for a, b in zip(mine, django, strict=True)
        )
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


def _head(data: bytes) -> str:
    return data[:3000].decode("utf-8", "replace")


@dataclass
class Kill:
    """A worker process killed at ``at`` (time.monotonic()), and the server's view then."""

    at: float
    in_flight: dict[Any, str] = field(default_factory=dict)  # connection -> token


_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to", "sender"}


def _unfolded(value: Any) -> str:
    """Header text as a reader sees it: unfolded, without leading or trailing blanks."""
    return "".join(str(value).splitlines()).strip()


def _text(value: str) -> str:
    """Body text compared across SMTP, which turns every line ending into CRLF."""
    return value.replace("\r\n", "\n").rstrip("\n")


def _same_content(received: Any, given: Any) -> bool:
    if isinstance(received, str):
        if isinstance(given, bytes):
            given = given.decode()
        return _text(received) == _text(str(given))
    return bool(received == (given.encode() if isinstance(given, str) else given))


def _addr_spec(address: str) -> str:
    """The lowercased addr-spec of ``address``, its domain IDNA-encoded (as in the envelope)."""
    spec = parseaddr(address)[1] or address
    local, _, domain = spec.rpartition("@")
    if not local:
        return spec.lower()
    return f"{local}@{domain.encode('idna').decode('ascii')}".lower()


def _mailboxes(values: Any) -> list[tuple[str, str]]:
    """(display name, addr-spec) of every mailbox in header values or address strings."""
    found = []
    for value in values:
        parsed = AddressHeader.value_parser(str(value))
        for mailbox in parsed.all_mailboxes:
            domain = (mailbox.domain or "").encode("idna").decode("ascii")
            found.append((mailbox.display_name or "", f"{mailbox.local_part}@{domain}".lower()))
    return found


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

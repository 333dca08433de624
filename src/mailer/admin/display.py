"""Stored mail as the admin shows it: summaries, headers, bodies, recipients, previews.

Everything here accepts any stored data -- the JSON we write, a truncated
prefix of it, another tool's rows, garbage -- and returns something to
display instead of raising.
"""

from __future__ import annotations

import datetime
import email.message
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from django.core.mail import EmailMessage
from django.utils import formats, timezone
from django.utils.encoding import force_str
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext

from mailer.admin import preview, validity
from mailer.exceptions import MailerWarning, UndecodableMessage
from mailer.message import codec
from mailer.message.summary import leading_keys, summarize
from mailer.message.validation import address_key

# The list pages read only this much of each row's data: the summary's keys come
# before the attachments, which are what makes stored mail big.
SUMMARY_PREFIX = 32_768
MAX_BODY = 200_000
# What a list cell shows of a subject or a reply, and of one address; the rest is in its title.
LIST_TEXT = 80
LIST_ADDRESS = 40
LIST_RECIPIENTS = 2


def prefix_document(text: str | None) -> dict[str, Any]:
    """The top-level keys of a JSON object whose text may be cut short, as far as they go."""
    if not text:
        return {}
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):
        pass
    else:
        return whole if isinstance(whole, dict) else {}
    return leading_keys(text)  # cut short: as far as it goes


def summary(text: str | None) -> dict[str, Any]:
    """``summarize`` of whole or truncated stored data; empty if it is not ours."""
    return summary_of(prefix_document(text))


def summary_of(doc: dict[str, Any]) -> dict[str, Any]:
    """``summarize`` of a document read in whole or in part; empty if it is not ours."""
    try:
        return summarize(doc)
    except RecursionError:  # a subject or address nested as deep as JSON allows
        return {}


def recipients_of(summary: dict[str, Any]) -> list[str]:
    return [*summary.get("to", []), *summary.get("cc", []), *summary.get("bcc", [])]


@dataclass
class Attachment:
    filename: str
    mimetype: str
    size: int


INVALID = "Stored data is not valid: the message cannot be decoded."
NOT_KEPT = "The message data was not kept."


@dataclass
class EmailView:
    """A stored message taken apart for display.

    ``error`` says why there is nothing to show; ``detail`` says what is wrong
    with the data, and may quote it (only those who may read bodies see it).
    """

    error: str = ""
    detail: str = ""
    class_path: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    html: str | None = None
    truncated: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    inline_images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    raw: str = ""

    def preview(self) -> str:
        """The HTML body rewritten to load nothing remote; ``cid:`` images become ``data:``."""
        if self.html is None:
            return ""
        return preview.render(self.html, self.inline_images)


def email_view(data: str | None) -> EmailView:
    """Decode stored data for the detail page; a view with an error if it cannot be."""
    if not data:
        return EmailView(error=NOT_KEPT)
    try:
        return _taken_apart(data)
    # Any shape of data may be stored (attrs that break the message once set, values
    # of unexpected types, nesting at the decoder's limit...): it is described, not raised.
    except Exception as error:
        detail = str(error) if isinstance(error, UndecodableMessage) else repr(error)
        return EmailView(
            error=INVALID,
            detail=detail[:500],
            raw=data[:MAX_BODY],
            truncated=len(data) > MAX_BODY,
        )


def _taken_apart(data: str) -> EmailView:
    doc = json.loads(data)
    problem = validity.attrs_problem(doc)
    if problem:
        raise UndecodableMessage(problem)
    with warnings.catch_warnings():
        # An unknown message class is shown as Django's; the content is the same.
        warnings.simplefilter("ignore", MailerWarning)
        message = codec.from_document(doc)
    view = EmailView(class_path=_text(doc.get("class", "")), headers=_headers(message))
    body = _text(message.body)
    if message.content_subtype == "html":
        view.html = body
    else:
        view.text = body
    for content, mimetype in getattr(message, "alternatives", None) or ():
        if mimetype == "text/html" and view.html is None:
            view.html = _text(content)
    for value in ("text", "html"):
        content = getattr(view, value)
        if content is not None and len(content) > MAX_BODY:
            setattr(view, value, content[:MAX_BODY])
            view.truncated = True
    for attachment in message.attachments:
        view.attachments.append(_attachment(attachment, view.inline_images))
    return view


def _headers(message: EmailMessage) -> list[tuple[str, str]]:
    headers = [
        ("From", _text(message.from_email)),
        ("To", ", ".join(_text(a) for a in message.to)),
        ("Cc", ", ".join(_text(a) for a in message.cc)),
        ("Bcc", ", ".join(_text(a) for a in message.bcc)),
        ("Reply-To", ", ".join(_text(a) for a in message.reply_to)),
        ("Subject", _text(message.subject)),
    ]
    headers = [(name, value) for name, value in headers if value]
    headers.extend((_text(name), _text(value)) for name, value in message.extra_headers.items())
    return headers


def _text(value: Any) -> str:
    """``value`` as text to show, whatever it is (stored values may be of any type)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | dict):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)[:MAX_BODY]
        except (ValueError, RecursionError):
            return f"({type(value).__name__})"
    return force_str(value, strings_only=False, errors="replace")


def _attachment(item: Any, inline_images: dict[str, tuple[str, bytes]]) -> Attachment:
    if isinstance(item, email.message.Message):
        payload = item.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        mimetype = item.get_content_type()
        content_id = str(item.get("Content-ID", "")).strip().strip("<>")
        if content_id and mimetype.startswith("image/"):
            inline_images[content_id] = (mimetype, content)
        return Attachment(_text(item.get_filename() or ""), mimetype, len(content))
    filename, content, mimetype = item
    if isinstance(content, str):
        size = len(content.encode("utf-8", "replace"))
    elif isinstance(content, bytes | bytearray):
        size = len(content)
    else:
        size = 0
    return Attachment(_text(filename or ""), _text(mimetype or ""), size)


@dataclass
class RecipientRow:
    address: str
    kind: str  # to, cc, bcc, or "" for one the message no longer names
    result: str  # sent, permanent, transient, skipped, cancelled, pending
    code: int | None
    reply: str
    provider_id: str = ""  # the id an email service provider gave this recipient's copy


def recipient_rows(summary: dict[str, Any], results: Any) -> list[RecipientRow]:
    """Each recipient of a queued message with its result so far (``recipient_results``)."""
    by_key: dict[str, list[Any]] = {}
    if isinstance(results, dict):
        for address, result in results.items():
            by_key[address_key(str(address))] = result if isinstance(result, list) else [result]
    rows: list[RecipientRow] = []
    for kind in ("to", "cc", "bcc"):
        for address in summary.get(kind, []):
            result = by_key.pop(address_key(address), None)
            rows.append(_row(address, kind, result))
    rows.extend(_row(address, "", result) for address, result in by_key.items())
    return rows


def log_recipient_rows(recipients: Any) -> list[RecipientRow]:
    """The recipients a log row concerned (``MessageLog.recipients``)."""
    if not isinstance(recipients, list):
        return []
    rows = []
    for entry in recipients:
        if isinstance(entry, list) and entry:
            rows.append(_row(_text(entry[0]), "", entry[1:]))
        else:
            rows.append(_row(_text(entry), "", None))
    return rows


def attempt_recipients(recipients: Any) -> str:
    """The recipients of an attempt in a line: "address (result), ..."."""
    return ", ".join(
        f"{row.address} ({row.result})" if row.result != "pending" else row.address
        for row in log_recipient_rows(recipients)
        if row.address
    )


def _row(address: str, kind: str, result: list[Any] | None) -> RecipientRow:
    if not result:
        return RecipientRow(address, kind, "pending", None, "")
    verdict = _text(result[0])
    code = result[1] if len(result) > 1 and isinstance(result[1], int) else None
    reply = _text(result[2]) if len(result) > 2 else ""
    provider_id = _text(result[3]) if len(result) > 3 and result[3] else ""
    return RecipientRow(address, kind, verdict, code, reply, provider_id)


# -- List cells that fit the page ---------------------------------------------------------


def clipped(text: str, limit: int = LIST_TEXT) -> SafeString:
    """``text`` for a list cell: whole if short, else its start and "…", whole in the title."""
    if len(text) <= limit:
        return conditional_escape(text)
    return format_html('<span title="{}">{}…</span>', text, text[: limit - 1].rstrip())


def addresses_cell(addresses: list[str], shown: int = LIST_RECIPIENTS) -> SafeString:
    """The first recipients, breakable at "@" and dots, and how many more; all in the title."""
    if not addresses:
        return conditional_escape("—")
    cells = format_html_join(", ", "{}", ((_breakable(a),) for a in addresses[:shown]))
    more = len(addresses) - shown
    if more > 0:
        cells = format_html('{} <span class="mailer-more">(+{})</span>', cells, more)
    whole = ", ".join(addresses)
    if more > 0 or any(len(a) > LIST_ADDRESS for a in addresses[:shown]):
        return format_html('<span title="{}">{}</span>', whole, cells)
    return cells


def _breakable(address: str) -> SafeString:
    """An address (shortened to ``LIST_ADDRESS``) that may wrap before its "@" and after dots."""
    if len(address) > LIST_ADDRESS:
        address = address[: LIST_ADDRESS - 1] + "…"
    local, at, domain = address.rpartition("@")
    parts = [local, domain] if at else [address]
    # Each part is escaped, then joined with markup only.
    dotted = [SafeString(".<wbr>".join(conditional_escape(p).split("."))) for p in parts]
    return SafeString("<wbr>@".join(dotted))


def moment(value: datetime.datetime | None, now: datetime.datetime | None = None) -> SafeString:
    """A time for a list cell: how long ago or how soon ("5 minutes ago", "in 23 hours"),
    the exact local time in the title. Shorter than a date, and what a queue is read for."""
    if value is None:
        return conditional_escape("—")
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(timespec="seconds"),
        formats.date_format(local, "DATETIME_FORMAT"),
        relative(value, now, depth=1).replace("\xa0", " "),  # "19 / minutes" may wrap
    )


MINUTE = datetime.timedelta(minutes=1)


def duration(since: datetime.datetime, now: datetime.datetime | None = None, depth: int = 2) -> str:
    """The time from ``since`` to ``now`` in words: "3 hours, 2 minutes", "less than a minute".

    Django's ``timesince`` says "0 minutes" for anything under a minute.
    """
    now = now or timezone.now()
    if abs(now - since) < MINUTE:
        return gettext("less than a minute")
    return (
        timesince(since, now, depth=depth) if since <= now else timeuntil(since, now, depth=depth)
    )


def relative(when: datetime.datetime, now: datetime.datetime | None = None, depth: int = 2) -> str:
    """``when`` from ``now``: "5 minutes ago", "less than a minute ago", "in 2 hours"."""
    now = now or timezone.now()
    if abs(now - when) < MINUTE:
        return (
            gettext("less than a minute ago") if when <= now else gettext("in less than a minute")
        )
    if when <= now:
        return gettext("%(duration)s ago") % {"duration": duration(when, now, depth)}
    return gettext("in %(duration)s") % {"duration": duration(when, now, depth)}

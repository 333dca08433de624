"""Named sample messages. Each carries a unique token in its subject and body,
so the SMTP server can say which message arrived, and how many times."""

from __future__ import annotations

import base64
import itertools
import pickle
import uuid
from email.message import MIMEPart
from email.mime.image import MIMEImage
from types import SimpleNamespace
from typing import Any

import django
from django.core.mail import EmailMessage, EmailMultiAlternatives

_counter = itertools.count(1)
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00"
    b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}-{next(_counter)}"


def plain(to: list[str] | None = None, **kwargs: object) -> EmailMessage:
    """A one-line text message to alice."""
    tok = token()
    return EmailMessage(
        f"Hello {tok}",
        f"Plain body {tok}\n",
        "sender@example.com",
        to or ["alice@example.com"],
        **kwargs,  # type: ignore[arg-type]
    )


def keyed(key: object, to: list[str] | None = None) -> EmailMessage:
    """A plain message that carries an idempotency key in the queue's control header."""
    return plain(to, headers={"X-Mailer-Idempotency-Key": key})


def html(to: list[str] | None = None) -> EmailMultiAlternatives:
    """Text and HTML alternatives."""
    tok = token()
    message = EmailMultiAlternatives(
        f"Newsletter {tok}", f"Text part {tok}", "news@example.com", to or ["bob@example.com"]
    )
    message.attach_alternative(f"<p>HTML part <b>{tok}</b></p>", "text/html")
    return message


def with_attachments(to: list[str] | None = None) -> EmailMultiAlternatives:
    """HTML with a PDF, a non-ASCII file name, a text file and an inline image."""
    message = html(to)
    message.subject = message.subject.replace("Newsletter", "Invoice")
    message.attach("invoice.pdf", b"%PDF-1.4 binary \x00\x01\x02\xff", "application/pdf")
    message.attach("Übersicht – März.txt", "Grüße aus Köln\n", "text/plain")
    message.attach(inline_image())
    return message


def inline_image(filename: str = "logo.gif", content: bytes = GIF, cid: str = "<logo>") -> object:
    """A GIF with Content-ID <logo>, as the MIME part type this Django version expects."""
    if django.VERSION >= (6, 0):
        part = MIMEPart()
        part.set_content(
            content, maintype="image", subtype="gif", disposition="inline", filename=filename
        )
        part["Content-ID"] = cid
        return part
    # DJANGO_COMPAT(<6.0): legacy email.mime parts.
    image = MIMEImage(content, "gif")
    image.add_header("Content-ID", cid)
    image.add_header("Content-Disposition", "inline", filename=filename)
    return image


def non_ascii(to: list[str] | None = None) -> EmailMessage:
    """Non-ASCII subject, body, display names and reply-to."""
    tok = token()
    return EmailMessage(
        f"Grüße, Ωμέγα, 日本 {tok}",
        f"Schöne Grüße — {tok}\n",
        "Jürgen Müller <juergen@example.com>",
        to or ["Zoë Åberg <zoe@example.com>"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["Réponse <reply@example.com>"],
        headers={"X-Campaign": "spring-été"},
    )


def batch(count: int, to: list[str] | None = None) -> list[EmailMessage]:
    return [plain(to) for _ in range(count)]


def token_of(message: EmailMessage) -> str:
    return str(message.subject).rsplit(" ", 1)[-1]


def as_django_mailer_stored(obj: Any, protocol: int = pickle.DEFAULT_PROTOCOL) -> str:
    """``obj`` as django-mailer stores it in ``message_data`` (its models.email_to_db)."""
    return base64.encodebytes(pickle.dumps(obj, protocol)).decode("ascii")


def non_ascii_everywhere(to: list[str] | None = None) -> EmailMultiAlternatives:
    """Non-ASCII in every header, name, domain and file name -- but only ASCII local parts,
    so no server needs SMTPUTF8 for it."""
    tok = token()
    message = EmailMultiAlternatives(
        f"Grüße, Ωμέγα, 日本 — {tok}",
        f"Schöne Grüße aus Köln — {tok}\n",
        "Jürgen Müller <juergen@exämple.de>",
        to or ["Zoë Åberg <zoe@exämple.de>", "例え <rei@例え.jp>"],
        cc=["Ñandú <nandu@example.com>"],
        bcc=["Ωmega <omega@example.com>"],
        reply_to=["Réponse <reply@example.com>"],
        headers={"X-Campaign": "spring-été", "Comments": "日本語のコメント", "Keywords": "Grüße"},
    )
    message.attach_alternative(f"<p>Schöne Grüße <b>{tok}</b></p>", "text/html")
    message.attach("Übersicht – März.pdf", b"%PDF-1.4 \x00\xff binary", "application/pdf")
    message.attach("日本語のファイル.txt", "テキスト、ありがとう\n", "text/plain")
    message.attach("ça_et_là.csv", "clé,valeur\nété,1\n", "text/csv")
    return message


def with_subject(text: str, length: int | None = None) -> EmailMessage:
    """A plain message whose subject is ``text`` followed by its token (a word of its own).

    With ``length``, ``text`` is cut so that the whole subject has that many characters.
    """
    message = plain()
    tok = token_of(message)
    if length is not None:
        assert len(text) >= length, "not enough text for a subject that long"
        text = text[: length - len(tok) - 1]
    message.subject = f"{text} {tok}"
    return message


def with_attachment(content: bytes, filename: str = "big.bin") -> EmailMessage:
    """A plain message carrying ``content`` as a binary attachment."""
    message = plain()
    message.attach(filename, content, "application/octet-stream")
    return message


def claims(owner: str, *ids: int) -> list[Any]:
    """Claimed messages as a delivery pool sees them: an id and who claimed it."""
    return [SimpleNamespace(pk=pk, claimed_by=owner) for pk in ids]


def ids(messages: Any) -> list[int]:
    """The ids of messages, in order."""
    return [message.pk for message in messages]

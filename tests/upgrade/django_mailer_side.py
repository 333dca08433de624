"""django-mailer 2.3.2's side of the upgrade test; runs in django-mailer's virtualenv.

    python django_mailer_side.py queue    # migrate, queue mail of every kind, print the state
    python django_mailer_side.py poison   # add rows whose pickles name code to run
    python django_mailer_side.py send     # retry_deferred + send_mail, as a django-mailer site does

Reads a JSON request on stdin and prints a JSON answer. Everything here uses
django-mailer's own interface; our package is never imported (checked below).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pickle
import sys
from email.mime.image import MIMEImage
from typing import Any

os.environ["DJANGO_SETTINGS_MODULE"] = "django_mailer_settings"

import django

django.setup()

from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils.safestring import mark_safe  # noqa: E402
from django.utils.translation import gettext_lazy  # noqa: E402

import mailer  # noqa: E402
from mailer.engine import send_all  # noqa: E402
from mailer.models import (  # noqa: E402
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    DontSendEntry,
    Message,
    MessageLog,
    make_message,
)

if getattr(mailer, "__version__", None) != "2.3.2":
    sys.exit(f"expected django-mailer 2.3.2, imported {mailer.__file__}")

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n\x00\x01\x02\xff trailer\n%%EOF\n"
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00"
    b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
BLOCKED = ["blocked@example.com", "Opt.Out@Example.com"]


def newest() -> Message:
    return Message.objects.order_by("-pk")[0]


def queue(tokens: dict[str, str], closed_port: int) -> None:
    """Queue one message of each kind, each carrying its token."""
    for when, address in enumerate(BLOCKED):
        DontSendEntry.objects.create(
            to_address=address,
            when_added=datetime.datetime(2024, 3, 1 + when, 12, 30, tzinfo=datetime.UTC),
        )
    t = tokens
    # mailer.send_mail filters the don't-send list when it queues.
    mailer.send_mail(
        f"Hello {t['plain']}",
        f"Plain body {t['plain']}\n",
        "sender@example.com",
        ["alice@example.com", "blocked@example.com"],
    )
    mailer.send_mail(
        f"Urgent {t['high']}", f"High body {t['high']}", None, ["a@example.com"], PRIORITY_HIGH
    )
    mailer.send_mail(
        f"Later {t['low']}", f"Low body {t['low']}", None, ["b@example.com"], PRIORITY_LOW
    )
    mailer.send_html_mail(
        f"Newsletter {t['html']}",
        f"Text part {t['html']}",
        f"<p>HTML part <b>{t['html']}</b> – grüße</p>",
        "news@example.com",
        ["bob@example.com"],
        headers={"X-Campaign": "spring-été", "Reply-To": "desk@example.com"},
    )

    # Attachments: set the email attribute of a made message, as make_message's docs say.
    queued = make_message(to=["carol@example.com"], priority=PRIORITY_MEDIUM)
    email = mail.EmailMultiAlternatives(
        f"Invoice {t['attachments']}",
        f"Your invoice {t['attachments']}\n",
        "billing@example.com",
        ["Carol Dürr <carol@example.com>"],
        cc=["accounts@example.com"],
        bcc=["archive@example.com"],
    )
    email.attach_alternative(f"<p>Invoice <img src='cid:logo'> {t['attachments']}</p>", "text/html")
    email.attach("invoice.pdf", PDF, "application/pdf")
    email.attach("Übersicht – März.txt", "Grüße aus Köln\n", "text/plain")
    email.attach("Quittung Nr. 7 – ß.pdf", PDF + b"\x80\x81", "application/pdf")
    image = MIMEImage(GIF, "gif")
    image.add_header("Content-ID", "<logo>")
    image.add_header("Content-Disposition", "inline", filename="logo.gif")
    email.attach(image)
    queued.email = email
    queued.save()

    # make_message keeps a lazy subject lazy: the pickle holds the translation proxy.
    make_message(
        gettext_lazy("This field is required."),
        f"Lazy subject {t['lazy']}\n",
        "forms@example.com",
        ["dave@example.com"],
        priority=PRIORITY_MEDIUM,
    ).save()

    # Through EMAIL_BACKEND: the pickles hold the DbBackend connection too.
    mail.send_mail(
        f"Welcome {t['backend']}",
        f"Through Django {t['backend']}\n",
        "welcome@example.com",
        ["erin@example.com"],
        html_message=mark_safe(f"<p>Welcome <i>{t['backend']}</i></p>"),
    )
    mail.EmailMessage(
        f"Grüße, Ωμέγα, 日本 {t['backend_unicode']}",
        f"Schöne Grüße — {t['backend_unicode']}\n",
        "Jürgen Müller <juergen@example.com>",
        ["Zoë Åberg <zoe@example.com>"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["Réponse <reply@example.com>"],
        headers={"X-Campaign": "spring-été"},
    ).send()
    html_only = mail.EmailMessage(
        f"Report {t['html_only']}",
        f"<h1>Report {t['html_only']}</h1>",
        None,
        ["frank@example.com"],
    )
    html_only.content_subtype = "html"
    html_only.send()
    mail.mail_admins(f"Alert {t['admins']}", f"Admins body {t['admins']}")

    # Deferred three ways: by priority, by Message.defer(), by a failed delivery.
    mailer.send_mail(
        f"Held {t['deferred_priority']}",
        f"Held body {t['deferred_priority']}",
        None,
        ["gina@example.com"],
        PRIORITY_DEFERRED,
    )
    mailer.send_mail(
        f"Deferred {t['deferred_defer']}",
        f"Deferred body {t['deferred_defer']}",
        None,
        ["hank@example.com"],
    )
    newest().defer()
    mailer.send_mail(
        f"Bounced {t['deferred_failure']}",
        f"Retry body {t['deferred_failure']}",
        None,
        ["ivy@example.com"],
    )
    failing = Message.objects.filter(pk=newest().pk)
    with override_settings(EMAIL_PORT=closed_port, MAILER_USE_FILE_LOCK=False):
        send_all(failing)  # connection refused: deferred, with a failure log

    # Sent before the upgrade: success logs, with and without the message data.
    locmem = "django.core.mail.backends.locmem.EmailBackend"
    for kind, keep_data in (("sent", True), ("sent_no_data", False)):
        mailer.send_mail(f"Sent {t[kind]}", f"Sent body {t[kind]}", None, ["judy@example.com"])
        with override_settings(
            MAILER_EMAIL_BACKEND=locmem,
            MAILER_USE_FILE_LOCK=False,
            MAILER_EMAIL_LOG_MESSAGE_DATA=keep_data,
        ):
            send_all(Message.objects.filter(pk=newest().pk))
    assert len(mail.outbox) == 2, mail.outbox


def state() -> dict[str, Any]:
    """The queue, the log and the don't-send list, as django-mailer reads them."""
    return {
        "django": list(django.VERSION[:2]),
        "migrations": sorted(
            name
            for app, name in MigrationRecorder(connection).applied_migrations()
            if app == "mailer"
        ),
        "messages": [
            {
                "id": m.pk,
                "priority": m.priority,
                "retry_count": m.retry_count,
                "when_added": m.when_added.isoformat(),
                "subject": str(m.subject),
                "to": list(m.to_addresses),
            }
            for m in Message.objects.order_by("pk")
        ],
        "logs": [
            {
                "id": log.pk,
                "result": log.result,
                "message_id": log.message_id,
                "when_added": log.when_added.isoformat(),
                "when_attempted": log.when_attempted.isoformat(),
                "priority": log.priority,
                "log_message": log.log_message,
                "has_data": log.message_data is not None,
                "subject": None if log.subject is None else str(log.subject),
                "to": log.to_addresses,
            }
            for log in MessageLog.objects.order_by("pk")
        ],
        "dont_send": [
            {"id": e.pk, "to_address": e.to_address, "when_added": e.when_added.isoformat()}
            for e in DontSendEntry.objects.order_by("pk")
        ],
    }


class Run:
    """Pickles to a callable with arguments: what an attacker would store."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return self.func, self.args


def stored(obj: Any) -> str:
    """``obj`` as django-mailer stores it (models.email_to_db)."""
    return base64.encodebytes(pickle.dumps(obj)).decode("ascii")


def payloads(markers: dict[str, str]) -> dict[str, str]:
    """Stored data that, unpickled by pickle.loads, creates the marker files."""
    from django.utils.functional import _lazy_proxy_unpickle

    def email(**overrides: Any) -> mail.EmailMessage:
        message = mail.EmailMessage("Poison", "body", None, ["victim@example.com"])
        for name, value in overrides.items():
            setattr(message, name, value)
        return message

    touch = {name: f"touch {path}" for name, path in markers.items()}
    return {
        "os_system": stored(Run(os.system, touch["os_system"])),
        "lazy_subject": stored(
            email(subject=Run(_lazy_proxy_unpickle, os.system, (touch["lazy_subject"],), {}, str))
        ),
        "header": stored(email(extra_headers={"X-Run": Run(os.system, touch["header"])})),
        "attachment": stored(
            email(attachments=[Run(eval, f"__import__('os').system({touch['attachment']!r})")])
        ),
        "not_email": stored({"subject": "a dict", "to": ["victim@example.com"]}),
        "garbage": "bm90IGEgcGlja2xl\n",
    }


def poison(markers: dict[str, str], controls: dict[str, str]) -> dict[str, Any]:
    """Queue poisoned rows and a log row; read the same data, aimed at ``controls``, as
    django-mailer does: the test sees which files that creates."""
    from mailer.models import db_to_email

    ids = {}
    for name, data in payloads(markers).items():
        ids[name] = Message.objects.create(message_data=data).pk
    log = MessageLog.objects.create(
        message_data=payloads(markers)["os_system"],
        message_id="<poison@example.com>",
        when_added=datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC),
        priority=2,
        result="3",
        log_message="poisoned log row",
    )
    ids["log"] = log.pk
    # The same payloads, aimed at other files, read the way django-mailer reads a row.
    for data in payloads(controls).values():
        loaded = db_to_email(data)
        str(getattr(loaded, "subject", ""))  # a lazy subject runs when it becomes text
    return ids


def main() -> None:
    request = json.load(sys.stdin)
    command = sys.argv[1]
    if command == "queue":
        call_command("migrate", verbosity=0)
        queue(request["tokens"], request["closed_port"])
        answer: Any = state()
    elif command == "poison":
        answer = poison(request["markers"], request["controls"])
    elif command == "send":
        call_command("retry_deferred")
        call_command("send_mail")
        answer = state()
    else:
        sys.exit(f"unknown command {command}")
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()

"""The demo: queue mail through Django, deliver it to a local SMTP server, show what arrived.

    python demo/run.py

Starts an SMTP server (aiosmtpd) on 127.0.0.1, sets up the demo project on
SQLite, queues a few messages the ways a Django site does, runs
``manage.py send_mail`` and prints what the server received.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)  # type: ignore[attr-defined]
            )
        return "250 2.0.0 Ok: queued"


def main() -> None:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    var = Path(tempfile.mkdtemp(prefix="mailer-demo-"))
    os.environ["MAILER_DEMO_SMTP_PORT"] = str(port)
    os.environ["MAILER_DEMO_VAR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")

    import django

    django.setup()
    from django.core import mail
    from django.core.management import call_command

    import mailer
    from mailer.models import PRIORITY_HIGH, Message

    database = var / "demo.sqlite3"
    print(f"Django {django.get_version()}, SQLite at {database}, SMTP server on 127.0.0.1:{port}")
    call_command("migrate", verbosity=0)

    print("\n1. Queue mail the ways a Django site sends it")
    mail.send_mail("Welcome!", "Thanks for signing up.", None, ["new.user@example.com"])
    print("   django.core.mail.send_mail(...)              -> queued")
    order = mail.EmailMultiAlternatives(
        "Your order #1024",
        "Order confirmed.",
        None,
        ["buyer@example.com"],
        cc=["sales@example.com"],
    )
    order.attach_alternative("<h1>Order confirmed</h1><p>Thank you!</p>", "text/html")
    order.attach("receipt.txt", "1 x Teapot  24.00 EUR\n", "text/plain")
    order.send()
    print("   EmailMultiAlternatives(...).send()           -> queued (HTML + attachment)")
    mail.send_mass_mail(
        [("Newsletter", f"Issue {n}", None, [f"reader{n}@example.com"]) for n in range(1, 4)]
    )
    print("   django.core.mail.send_mass_mail(3 messages)  -> queued in one INSERT")
    mailer.send_mail(
        "Password reset", "Your link: ...", None, ["forgetful@example.com"], priority=PRIORITY_HIGH
    )
    print("   mailer.send_mail(..., priority=PRIORITY_HIGH) -> queued first in line")
    mail.mail_admins("Disk almost full", "85% used on /var")
    print("   django.core.mail.mail_admins(...)            -> queued")

    print(f"\n   The queue now holds {Message.objects.count()} messages; nothing was sent yet.")
    print(f"   The SMTP server has received {len(inbox.messages)} messages.")

    print("\n2. Deliver: python manage.py send_mail")
    call_command("send_mail", verbosity=1)

    print("\n3. What the SMTP server received, in order")
    for number, (sender, recipients, data) in enumerate(inbox.messages, 1):
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        parts = [part.get_content_type() for part in parsed.walk() if not part.is_multipart()]
        print(f"   {number}. {parsed['Subject']!s:<22} from {sender} to {', '.join(recipients)}")
        print(f"      Message-ID {parsed['Message-ID']}  parts: {', '.join(parts)}")
    print(f"\n   Queue left: {Message.objects.count()} messages.")
    smtp.stop()
    shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()

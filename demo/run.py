"""The demo: queue mail through Django, deliver it to a local SMTP server, show what arrived.

    python demo/run.py                  # the tour: queue, deliver, print what arrived
    python demo/run.py admin [--port 8000] [--var DIR] [--no-worker]

The tour starts an SMTP server (aiosmtpd) on 127.0.0.1, sets up the demo
project on SQLite, queues a few messages the ways a Django site does, runs
``manage.py send_mail`` and prints what the server received.

``admin`` fills the queue with mail in every state -- sent, failed with a
550, deferred by a 451, scheduled, held, and a scheduled HTML mail carrying a
script, whose preview the admin shows -- and serves the admin on 127.0.0.1
(users ``admin``/``admin`` and the view-only ``viewer``/``viewer``). Unless
``--no-worker`` is given, a thread delivers due mail every few seconds, so
what you retry is sent (or refused) again.

Both remove the temporary directory they made when they end, also when
stopped with Ctrl-C (SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def exit_on_sigterm() -> None:
    """Make SIGTERM end the demo as Ctrl-C does: through its ``finally`` clauses."""

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


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


class PickyInbox(Inbox):
    """An inbox whose server refuses some recipients, as real ones do."""

    REFUSED = {
        "nobody@example.com": "550 5.1.1 <nobody@example.com>: Recipient address rejected: "
        "User unknown",
        "greylisted@example.net": "451 4.7.1 Greylisted, please try again later",
    }

    async def handle_RCPT(
        self, server: object, session: object, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self.REFUSED.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"


SCRIPTED_HTML = """<!doctype html>
<html><head><title>Spring sale</title>
<style>body { font-family: sans-serif; } .offer { color: #b00; }</style></head>
<body>
<h1>Spring sale</h1>
<p class="offer">Everything half price until Sunday.</p>
<p id="script-status">script did not run</p>
<img src="/static/admin/img/icon-yes.svg?tracking-pixel" alt="">
<img src="https://remote.invalid/track.png?tracking-pixel" alt="">
<script>
document.getElementById("script-status").textContent = "SCRIPT RAN";
document.title = "SCRIPT RAN";
try { window.parent.document.title = "SCRIPT RAN IN THE ADMIN"; } catch (e) {}
window.parent.postMessage("script ran", "*");
fetch("/admin/login/?script-ran=1");
</script>
</body></html>"""


def queue_like_a_site(say: Callable[[str], None]) -> None:
    """Queue mail the ways a Django site sends it; ``say`` tells how each went."""
    from django.core import mail

    import mailer
    from mailer.models import PRIORITY_HIGH

    mail.send_mail("Welcome!", "Thanks for signing up.", None, ["new.user@example.com"])
    say("   django.core.mail.send_mail(...)              -> queued")
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
    say("   EmailMultiAlternatives(...).send()           -> queued (HTML + attachment)")
    mail.send_mass_mail(
        [("Newsletter", f"Issue {n}", None, [f"reader{n}@example.com"]) for n in range(1, 4)]
    )
    say("   django.core.mail.send_mass_mail(3 messages)  -> queued in one INSERT")
    mailer.send_mail(
        "Password reset",
        "Your link: https://shop.example.com/reset/4f2a-secret",
        None,
        ["forgetful@example.com"],
        priority=PRIORITY_HIGH,
    )
    say("   mailer.send_mail(..., priority=PRIORITY_HIGH) -> queued first in line")
    mail.mail_admins("Disk almost full", "85% used on /var")
    say("   django.core.mail.mail_admins(...)            -> queued")


def tour() -> None:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    var = Path(tempfile.mkdtemp(prefix="mailer-demo-"))
    try:
        run_tour(inbox, port, var)
    finally:
        smtp.stop()
        shutil.rmtree(var, ignore_errors=True)


def run_tour(inbox: Inbox, port: int, var: Path) -> None:
    os.environ["MAILER_DEMO_SMTP_PORT"] = str(port)
    os.environ["MAILER_DEMO_VAR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")

    import django

    django.setup()
    from django.core.management import call_command

    import mailer
    from mailer.models import Message

    database = var / "demo.sqlite3"
    print(f"Django {django.get_version()}, SQLite at {database}, SMTP server on 127.0.0.1:{port}")
    print(f"mailer {mailer.__version__} from {Path(mailer.__file__).parent}")
    call_command("migrate", verbosity=0)

    print("\n1. Queue mail the ways a Django site sends it")
    queue_like_a_site(say=print)
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


def admin(port: int, var: Path, worker: bool) -> None:
    """Fill a fresh queue with mail in every state and serve the admin on 127.0.0.1:``port``."""
    from aiosmtpd.controller import Controller

    smtp = Controller(PickyInbox(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        serve_admin(port, var, smtp.port, worker)
    finally:
        smtp.stop()


def serve_admin(port: int, var: Path, smtp_port: int, worker: bool) -> None:
    var.mkdir(parents=True, exist_ok=True)
    os.environ["MAILER_DEMO_SMTP_PORT"] = str(smtp_port)
    os.environ["MAILER_DEMO_VAR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    make_users()
    seed()
    stop = threading.Event()
    delivery = threading.Thread(target=deliver_until, args=(stop,), name="demo-worker", daemon=True)
    if worker:
        delivery.start()
    try:
        serve(port, var, smtp_port, worker)
    finally:
        # Before the directory goes: the worker's next run would open its database again.
        stop.set()
        if delivery.is_alive():
            delivery.join(timeout=30)


def serve(port: int, var: Path, smtp_port: int, worker: bool) -> None:
    from django.core.management import call_command

    print(f"\nThe admin: http://127.0.0.1:{port}/admin/  (admin / admin, or viewer / viewer)")
    print(f"SQLite at {var / 'demo.sqlite3'}, SMTP server on 127.0.0.1:{smtp_port}")
    if not worker:
        print("No worker runs (--no-worker): mail you retry stays due.")
    sys.stdout.flush()
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)


def make_users() -> None:
    """admin: everything. viewer: may look at the queue, not at bodies, and may not send."""
    from django.contrib.auth.models import Permission, User

    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.com", "admin")
    if not User.objects.filter(username="viewer").exists():
        viewer = User.objects.create_user("viewer", "viewer@example.com", "viewer", is_staff=True)
        viewer.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="mailer", codename__startswith="view_"
            ).exclude(codename="view_message_body")
        )


def seed() -> None:
    """Queue mail the ways a site does, deliver it once, then queue what stays waiting."""
    import datetime

    from django.core import mail
    from django.utils import timezone

    import mailer
    from mailer.engine import send_all
    from mailer.models import Message

    queue_like_a_site(say=lambda line: None)
    mail.send_mail("Your invoice", "Attached.", None, ["nobody@example.com"])
    mail.send_mail("Weekly digest", "Five new posts.", None, ["greylisted@example.net"])
    # A row another program wrote: the worker fails it, the admin still shows it.
    Message.objects.create(message_data="not a message this mailer wrote", due_at=timezone.now())
    counts = send_all()
    print(f"Delivered once: {counts.sent} sent, {counts.deferred} deferred, {counts.failed} failed")

    tomorrow = timezone.now() + datetime.timedelta(days=1)
    mailer.send_mail(
        "Reminder: your appointment",
        "See you tomorrow.",
        None,
        ["patient@example.com"],
        send_at=tomorrow.replace(hour=9, minute=0, second=0, microsecond=0),
    )
    mailer.send_mail(
        "On hold", "Held until retried.", None, ["later@example.com"], priority="deferred"
    )
    # Scheduled, so that the worker leaves it in the queue, where the admin previews it.
    mailer.send_html_mail(
        "Spring sale",
        "Everything half price until Sunday.",
        SCRIPTED_HTML,
        None,
        ["customer@example.com"],
        send_at=tomorrow.replace(hour=8, minute=0, second=0, microsecond=0),
    )
    print(describe_queue())


def describe_queue() -> str:
    """What the admin's lists show: messages by the state filter's names, and log rows."""
    from mailer.models import Message, MessageLog

    counts, _ = Message.objects.states()
    states = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    return (
        f"The queue holds {sum(counts.values())} messages ({states}); "
        f"the log holds {MessageLog.objects.count()} attempts."
    )


def deliver_until(stop: threading.Event) -> None:
    """Deliver due mail every few seconds, as a worker would, until ``stop`` is set."""
    from django.db import close_old_connections

    from mailer.engine import send_all

    while not stop.wait(5):
        try:
            send_all()
        finally:
            close_old_connections()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("admin", help="fill a queue and serve the admin")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--var", type=Path, help="directory for the database (default: a new one)")
    serve.add_argument("--no-worker", action="store_true", help="deliver nothing while serving")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.command == "admin":
        var = args.var or Path(tempfile.mkdtemp(prefix="mailer-demo-admin-"))
        try:
            admin(args.port, var, worker=not args.no_worker)
        finally:
            if args.var is None:
                shutil.rmtree(var, ignore_errors=True)
    else:
        tour()


if __name__ == "__main__":
    main()

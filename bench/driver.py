"""One side of the benchmark, in one virtualenv: a long-lived process taking orders.

The orchestrator (bench/bench.py) starts one driver per package, Django and
database, and sends it one JSON command per line on stdin; the driver answers
one JSON line on stdout. Everything is done through the documented interface
of django-mailer, which this package shares: Django's ``send_mail`` and
``send_mass_mail`` with ``EMAIL_BACKEND = "mailer.backend.DbBackend"``,
``mailer.send_mail``, and ``mailer.engine.send_all``. Statements and
transactions are counted with ``execute_wrapper`` on every connection.
"""

from __future__ import annotations

import json
import os
import random
import smtplib
import sys
import time
import traceback
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsettings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.mail import EmailMessage, get_connection  # noqa: E402
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from sinkclient import Sink  # noqa: E402

import mailer  # noqa: E402
from mailer.engine import send_all  # noqa: E402
from mailer.models import Message, MessageLog  # noqa: E402

BODY = (
    "Hello,\n\nThis is a benchmark message. It is about as long as a password reset "
    "or an order confirmation: a greeting, a few sentences, a link and a signature.\n\n"
    "Your order has been received and will be shipped within two working days. You can "
    "follow it at https://shop.example.com/orders/0000000000 at any time.\n\n"
    "If you did not ask for this, you can ignore this message.\n\n"
    "Thanks,\nThe Example team\n"
)
FROM = "Example Shop <shop@example.com>"
ATTACHMENT = bytes(random.Random(42).getrandbits(8) for _ in range(100 * 1024))


def subject(prefix: str, i: int) -> str:
    return f"Your order tok-{prefix}-{i}"


def recipient(i: int) -> str:
    return f"customer{i}@example.com"


def make_email(prefix: str, i: int, attach_kb: int = 0) -> EmailMessage:
    email = EmailMessage(subject(prefix, i), BODY, FROM, [recipient(i)])
    if attach_kb:
        email.attach("invoice.pdf", ATTACHMENT[: attach_kb * 1024], "application/pdf")
    return email


# -- counting statements and transactions --------------------------------------------


class Counter:
    """Counts SQL statements (by verb) and transactions on every connection of the process.

    A transaction is a commit or rollback of an atomic block, or a statement run in
    autocommit mode (its own transaction).
    """

    def __init__(self) -> None:
        self.active = False
        self.reset()

    def reset(self) -> None:
        self.statements = 0
        self.by_verb: dict[str, int] = {}
        self.transactions = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.active:
            self.statements += 1
            verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            if context["connection"].get_autocommit():
                self.transactions += 1
        return execute(sql, params, many, context)

    def install(self, wrapper: Any) -> None:
        if getattr(wrapper, "_bench_counted", False):
            return
        wrapper._bench_counted = True
        wrapper.execute_wrappers.append(self)
        for name in ("commit", "rollback"):
            original = getattr(wrapper, name)

            def counted(original: Any = original) -> Any:
                if self.active:
                    self.transactions += 1
                return original()

            setattr(wrapper, name, counted)

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "transactions": self.transactions,
            "by_verb": dict(self.by_verb),
        }


COUNTER = Counter()


def _on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
    COUNTER.install(connection)


connection_created.connect(_on_connect)


class counting:
    def __enter__(self) -> Counter:
        for alias in connections:
            COUNTER.install(connections[alias])
        COUNTER.reset()
        COUNTER.active = True
        return COUNTER

    def __exit__(self, *exc: object) -> None:
        COUNTER.active = False


# -- commands ----------------------------------------------------------------------


def cmd_setup() -> dict[str, Any]:
    """Create this side's database afresh and migrate it."""
    from django.core.management import call_command

    vendor = connection.vendor
    name = settings.DATABASES["default"]["NAME"]
    if vendor in ("postgresql", "mysql"):
        connection.close()
        with connection._nodb_cursor() as cursor:
            quote = connection.ops.quote_name
            cursor.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
            extra = " CHARACTER SET utf8mb4" if vendor == "mysql" else ""
            cursor.execute(f"CREATE DATABASE {quote(name)}{extra}")
    else:
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(name + suffix):
                os.remove(name + suffix)
    call_command("migrate", verbosity=0, interactive=False)
    return {"vendor": vendor, "version": _db_version()}


def cmd_drop() -> dict[str, Any]:
    vendor = connection.vendor
    name = settings.DATABASES["default"]["NAME"]
    connection.close()
    if vendor in ("postgresql", "mysql"):
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")
    else:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(name + suffix):
                os.remove(name + suffix)
    return {}


def _db_version() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            return "SQLite " + cursor.fetchone()[0]
        cursor.execute("select version()")
        return str(cursor.fetchone()[0]).split(" on ")[0]


def cmd_clear() -> dict[str, Any]:
    """Empty the queue and the log (and this package's worker tables)."""
    tables = [t for t in connection.introspection.table_names() if t.startswith("mailer_")]
    with connection.cursor() as cursor:
        for table in tables:
            if table == "mailer_dontsendentry":
                continue
            quoted = connection.ops.quote_name(table)
            if connection.vendor == "sqlite":
                cursor.execute(f"DELETE FROM {quoted}")
            else:
                cursor.execute(f"TRUNCATE TABLE {quoted}")
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
    return {}


def cmd_count() -> dict[str, Any]:
    return {"queued": Message.objects.count(), "logged": MessageLog.objects.count()}


def cmd_analyze() -> dict[str, Any]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        elif connection.vendor == "mysql":
            cursor.execute("ANALYZE TABLE mailer_message")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")
    return {}


def cmd_enqueue(api: str, n: int, prefix: str, start: int = 0) -> dict[str, Any]:
    """Queue n messages through one documented entry point; time it and count statements."""
    with counting() as counter:
        began = time.perf_counter()
        if api == "django_send_mail":
            for i in range(start, start + n):
                mail.send_mail(subject(prefix, i), BODY, FROM, [recipient(i)])
        elif api == "mailer_send_mail":
            for i in range(start, start + n):
                mailer.send_mail(subject(prefix, i), BODY, FROM, [recipient(i)])
        elif api == "send_mass_mail":
            mail.send_mass_mail(
                [(subject(prefix, i), BODY, FROM, [recipient(i)]) for i in range(start, start + n)]
            )
        else:
            raise ValueError(api)
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "n": n, **counter.snapshot()}


def cmd_fill(n: int, prefix: str, start: int = 0, attach_kb: int = 0, chunk: int = 1000) -> Any:
    """Queue n messages quickly (DbBackend.send_messages, one transaction per chunk)."""
    began = time.perf_counter()
    backend = get_connection()
    chunk = max(1, min(chunk, 200 if attach_kb else chunk))
    for first in range(start, start + n, chunk):
        last = min(first + chunk, start + n)
        emails = [make_email(prefix, i, attach_kb) for i in range(first, last)]
        with transaction.atomic():
            backend.send_messages(emails)
    return {"seconds": time.perf_counter() - began, "n": n}


def cmd_drain(max_batch: int | None = None) -> dict[str, Any]:
    """``mailer.engine.send_all()`` in this process, as cron or Celery would call it."""
    with override_settings(MAILER_EMAIL_MAX_BATCH=max_batch), counting() as counter:
        began = time.perf_counter()
        send_all()
        seconds = time.perf_counter() - began
    return {"seconds": seconds, **counter.snapshot()}


def cmd_baseline_smtplib(n: int, prefix: str, port: int) -> dict[str, Any]:
    """The transport's floor: smtplib over one connection, messages rendered beforehand."""
    rendered = [
        (FROM, [recipient(i)], make_email(prefix, i).message().as_bytes(linesep="\r\n"))
        for i in range(n)
    ]
    began = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    for sender, to, data in rendered:
        smtp.sendmail(sender, to, data)
    smtp.quit()
    return {"seconds": time.perf_counter() - began, "n": n}


def cmd_baseline_django(n: int, prefix: str, port: int) -> dict[str, Any]:
    """Django's own SMTP backend over one open connection, building each message as it goes."""
    began = time.perf_counter()
    backend = SMTPBackend(host="127.0.0.1", port=port, timeout=30)
    with backend:
        for i in range(n):
            backend.send_messages([make_email(prefix, i)])
    return {"seconds": time.perf_counter() - began, "n": n}


def cmd_wakeup(k: int, prefix: str, control: int, gap: float, timeout: float = 30) -> Any:
    """Queue one message at a time with a worker idle; seconds from commit to SMTP accept."""
    sink = Sink(control)
    rng = random.Random(7)
    latencies = []
    try:
        for i in range(k):
            time.sleep(gap * (0.5 + rng.random()))  # the worker is idle, at a random phase
            token = f"tok-{prefix}-{i}"
            with transaction.atomic():
                mail.send_mail(subject(prefix, i), BODY, FROM, [recipient(i)])
            committed = time.monotonic()
            deadline = committed + timeout
            while True:
                accepted = sink.times([token])[token]
                if accepted is not None:
                    latencies.append(accepted - committed)
                    break
                if time.monotonic() > deadline:
                    latencies.append(None)
                    break
                time.sleep(0.001)
    finally:
        sink.close()
    return {"latencies": latencies}


COMMANDS = {name[4:]: value for name, value in globals().items() if name.startswith("cmd_")}


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by the code under test stays off the channel
    hello = {
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "package": _package_version(),
        "db": connection.vendor,
    }
    out.write(json.dumps(hello) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": COMMANDS[request.pop("cmd")](**request)}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("mailer", "django-mailer"):
        try:
            if name == "django-mailer" or os.environ.get("BENCH_SIDE") == "ours":
                return f"{name} {version(name)}"
        except PackageNotFoundError:
            continue
    return "unknown"


if __name__ == "__main__":
    main()

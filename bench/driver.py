"""One side of the benchmark, in one virtualenv: a long-lived process taking orders.

The orchestrator (bench/bench.py) starts one driver per package, Django and
database, and sends it one JSON command per line on stdin; the driver answers
one JSON line on stdout. Each package is driven through its documented
interface only: bench/queue_mailer.py for ours and django-mailer (they share
one), bench/queue_postoffice.py for django-post-office. Statements and
transactions are counted with ``execute_wrapper`` on every connection, CPU time
with ``getrusage`` (this process's threads and any child it waited for).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import resource
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
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend  # noqa: E402

try:
    from django.core.mail import mailers  # Django 6.1+
except ImportError:  # DJANGO_COMPAT(<6.1)
    mailers = None
from django.db import connection, connections, transaction  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
from sample import BODY, FROM, make_email, recipient, subject  # noqa: E402
from sinkclient import Sink  # noqa: E402

QUEUE: Any = importlib.import_module(
    "queue_postoffice" if os.environ.get("BENCH_SIDE") == "po" else "queue_mailer"
)


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
    """Empty the queue and the log (and the package's other tables but its settings)."""
    tables = [
        t
        for t in connection.introspection.table_names()
        if t.startswith(QUEUE.TABLE_PREFIX) and t not in QUEUE.KEEP_TABLES
    ]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one statement: foreign keys between them
            cursor.execute(f"TRUNCATE TABLE {', '.join(quote(t) for t in tables)}")
            cursor.execute("VACUUM ANALYZE")
        elif connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cursor.execute(f"TRUNCATE TABLE {quote(table)}")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            with transaction.atomic():  # SQLite checks the deferred foreign keys at commit
                for table in tables:
                    cursor.execute(f"DELETE FROM {quote(table)}")
    return {}


def cmd_count() -> dict[str, Any]:
    return dict(QUEUE.counts())


def cmd_analyze() -> dict[str, Any]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {QUEUE.QUEUE_TABLE}")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")
    return {}


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) and of the children it reaped."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def cmd_enqueue(api: str, n: int, prefix: str, start: int = 0) -> dict[str, Any]:
    """Queue n messages through one documented entry point; time it and count statements.

    ``api``: ``django_send_mail`` (Django's, one call a message), ``own_send_mail`` (the
    package's own: ``mailer.send_mail`` or ``post_office.mail.send``) or
    ``send_mass_mail`` (Django's, all n in one call).
    """
    with counting() as counter:
        began = time.perf_counter()
        if api == "django_send_mail":
            for i in range(start, start + n):
                mail.send_mail(subject(prefix, i), BODY, FROM, [recipient(i)])
        elif api == "own_send_mail":
            for i in range(start, start + n):
                QUEUE.send_one(prefix, i)
        elif api == "send_mass_mail":
            mail.send_mass_mail(
                [(subject(prefix, i), BODY, FROM, [recipient(i)]) for i in range(start, start + n)]
            )
        else:
            raise ValueError(api)
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "n": n, **counter.snapshot()}


def cmd_fill(n: int, prefix: str, start: int = 0, attach_kb: int = 0, chunk: int = 1000) -> Any:
    """Queue n messages quickly (the package's bulk path, one transaction per chunk)."""
    began = time.perf_counter()
    chunk = max(1, min(chunk, 200 if attach_kb else chunk))
    for first in range(start, start + n, chunk):
        QUEUE.fill(first, min(first + chunk, start + n), prefix, attach_kb)
    return {"seconds": time.perf_counter() - began, "n": n}


def cmd_drain(max_batch: int | None = None) -> dict[str, Any]:
    """The package's drain in this process, as cron or Celery would call it.

    Ours and django-mailer: ``mailer.engine.send_all()``; post-office:
    ``send_queued_mail_until_done()`` (what ``manage.py send_queued_mail`` runs).
    """
    with counting() as counter:
        cpu = cpu_seconds()
        began = time.perf_counter()
        QUEUE.drain(max_batch)
        seconds = time.perf_counter() - began
        cpu = cpu_seconds() - cpu
    return {"seconds": seconds, "cpu": cpu, **counter.snapshot()}


def cmd_baseline_smtplib(n: int, prefix: str, port: int) -> dict[str, Any]:
    """The transport's floor: smtplib over one connection, messages rendered beforehand."""
    rendered = [
        (FROM, [recipient(i)], make_email(prefix, i).message().as_bytes(linesep="\r\n"))
        for i in range(n)
    ]
    cpu = cpu_seconds()
    began = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    for sender, to, data in rendered:
        smtp.sendmail(sender, to, data)
    smtp.quit()
    return {"seconds": time.perf_counter() - began, "cpu": cpu_seconds() - cpu, "n": n}


def cmd_baseline_django(n: int, prefix: str, port: int) -> dict[str, Any]:
    """Django's own SMTP backend over one open connection, building each message as it goes."""
    cpu = cpu_seconds()
    began = time.perf_counter()
    if mailers is not None and hasattr(settings, "MAILERS"):  # no EMAIL_* settings to read
        backend = mailers["smtp"]
    else:
        backend = SMTPBackend(host="127.0.0.1", port=port, timeout=30)
    with backend:
        for i in range(n):
            backend.send_messages([make_email(prefix, i)])
    return {"seconds": time.perf_counter() - began, "cpu": cpu_seconds() - cpu, "n": n}


def cmd_wakeup(k: int, prefix: str, control: int, gap: float, timeout: float = 30) -> Any:
    """Queue one message at a time with a worker idle; seconds from commit to SMTP accept."""
    sink = Sink(control)
    rng = random.Random(7)
    latencies = []
    try:
        for i in range(k):
            time.sleep(gap * (0.5 + rng.random()))  # the worker is idle, at a random phase
            token = f"tok-{prefix}-{i}"
            # Queued in autocommit: committed when it returns. (Inside a transaction of
            # its own, SQLite's deferred one cannot upgrade to a writer once the idle
            # worker has written: "database is locked" at once; docs/troubleshooting.rst.)
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
    from importlib.metadata import version

    name = "django-mailroom" if os.environ.get("BENCH_SIDE") == "ours" else QUEUE.DISTRIBUTION
    return f"{name} {version(name)}"


if __name__ == "__main__":
    main()

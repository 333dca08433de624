"""How long the dashboard and the admin lists take on a big queue and a big log.

    PYTHONPATH=src:. python bench/admin_pages.py [--rows 1000000] [--db sqlite|postgres|mariadb]
                                                 [--explain]

Fills a scratch database (``mailer_bench``; SQLite: a file in the temp
directory) with ``--rows`` queued messages in every state and ``--rows`` log
rows over the last ten days, then times ``dashboard.gather()`` and a few
admin pages, as a logged-in superuser, and prints the slowest queries of
each; ``--explain`` also prints the database's plan for the dashboard's queries.
The database is created and dropped by the script.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import tempfile
import time
from typing import Any


def configure(db: str) -> None:
    os.environ["MAILER_TEST_DB"] = db
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings

    name = "mailer_bench"
    if db == "sqlite":
        name = os.path.join(tempfile.gettempdir(), f"{name}.sqlite3")
    settings.DATABASES["default"]["TEST"] = {"NAME": name}
    django.setup()


def fill(rows: int) -> None:
    from django.utils import timezone
    from tests.samples import plain

    from mailer.message import codec as storage
    from mailer.models import Message, MessageLog, Status

    now = timezone.now()
    rng = random.Random(1)
    data = storage.encode(plain())
    batch: list[Any] = []
    states = [
        (Status.QUEUED, lambda: now - datetime.timedelta(seconds=rng.randint(0, 3600))),
        (Status.QUEUED, lambda: now + datetime.timedelta(hours=rng.randint(1, 48))),
        (Status.DEFERRED, lambda: now + datetime.timedelta(seconds=rng.randint(1, 3600))),
        (Status.DEFERRED, lambda: None),
        (Status.FAILED, lambda: None),
    ]
    for number in range(rows):
        status, due = states[number % len(states)]
        batch.append(
            Message(
                message_data=data,
                status=status,
                due_at=due(),
                priority=1 + number % 3,
                when_added=now - datetime.timedelta(seconds=rng.randint(0, 864000)),
            )
        )
        if len(batch) == 10_000:
            Message.objects.bulk_create(batch)
            batch = []
    Message.objects.bulk_create(batch)
    batch = []
    replies = ["451 4.7.1 Greylisted", "550 5.1.1 No such user", "421 Try later", ""]
    for number in range(rows):
        when = now - datetime.timedelta(seconds=rng.randint(0, 864000))
        failed = number % 10 == 0
        batch.append(
            MessageLog(
                message_data=data if not failed else None,
                when_added=when,
                when_attempted=when,
                priority=2,
                result="3" if failed else "1",
                log_message="",
                queue_id=number,
                smtp_code=None if not failed else 451,
                smtp_reply=rng.choice(replies) if failed else "250 Ok",
            )
        )
        if len(batch) == 10_000:
            MessageLog.objects.bulk_create(batch)
            batch = []
    MessageLog.objects.bulk_create(batch)


def timed(label: str, call: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
    slowest = sorted(queries, key=lambda q: -float(q["time"] or 0))[:3]
    print(f"{label:<48} {elapsed * 1000:8.0f} ms  {len(queries):3d} queries")
    for query in slowest:
        print(f"    {float(query['time'] or 0) * 1000:7.0f} ms  {query['sql'][:150]}")


def explain(call: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    prefix = {"postgresql": "EXPLAIN ANALYZE ", "sqlite": "EXPLAIN QUERY PLAN "}
    for query in queries:
        with connection.cursor() as cursor:
            cursor.execute(prefix.get(connection.vendor, "EXPLAIN ") + query["sql"])
            plan = cursor.fetchall()
        print(query["sql"][:100])
        for line in plan:
            print("    ", " | ".join(str(part) for part in line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres", "mariadb"])
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    configure(args.db)

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from mailer.admin import dashboard

    setup_test_environment()
    creation = connection.creation
    old_name = connection.settings_dict["NAME"]
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        start = time.perf_counter()
        fill(args.rows)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE mailer_message")
                cursor.execute("VACUUM ANALYZE mailer_messagelog")
        elif connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        elapsed = time.perf_counter() - start
        print(f"{args.db}: {args.rows:,} messages and {args.rows:,} log rows in {elapsed:.0f} s")
        client = Client()
        client.force_login(User.objects.create_superuser("bench", "b@example.com", "x"))
        year = datetime.date.today().year
        pages = [
            ("dashboard page", "/admin/mailer/message/dashboard/"),
            ("message list", "/admin/mailer/message/"),
            ("message list, state=held", "/admin/mailer/message/?state=held"),
            ("log list", "/admin/mailer/messagelog/"),
            ("log list, this year", f"/admin/mailer/messagelog/?when_attempted__year={year}"),
            ("log list, failures", "/admin/mailer/messagelog/?result__exact=3"),
        ]
        if args.explain:
            explain(dashboard.gather)
        for _ in range(2):  # the second round shows warm caches
            timed("dashboard.gather()", dashboard.gather)
            for label, url in pages:
                timed(label, lambda url=url: client.get(url).content)
    finally:
        creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())

"""Switching from django-mailer keeps the queue.

django-mailer 2.3.2, in its own virtualenv (``MAILER_DJANGO_MAILER_PYTHON``),
migrates a fresh database and queues mail of every kind through its own
interface (``tests/upgrade/django_mailer_side.py``). The database is copied;
then our package migrates the original and delivers it with ``manage.py
send_mail`` (``tests/upgrade/mailer_side.py``), while django-mailer delivers
the copy itself, to a second SMTP server. Every message must arrive once from
each, the pairs must be the same email, and nothing named in the stored
pickles may ever run.
"""

from __future__ import annotations

import email
import email.policy
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage as ParsedMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import django
import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailer.message import pickles as legacy
from mailer.models import Message, MessageLog

from . import samples
from .samples import as_django_mailer_stored, token
from .smtp import Received, SMTPServer

UPGRADE = Path(__file__).parent / "upgrade"
SRC = Path(__file__).parents[1] / "src"
PYTHON_VARIABLE = "MAILER_DJANGO_MAILER_PYTHON"

DJANGO_MAILER_MIGRATIONS = [
    "0001_initial",
    "0002_auto_20150720_1433",
    "0003_messagelog_message_id",
    "0004_auto_20190920_1512",
    "0005_id_bigautofield",
    "0006_message_retry_count",
    "0007_alter_messagelog_message_data",
]
# Queued by django-mailer and still waiting when the database is migrated.
WAITING = [
    "plain",
    "high",
    "low",
    "html",
    "attachments",
    "lazy",
    "backend",
    "backend_unicode",
    "html_only",
    "admins",
    "deferred_priority",
    "deferred_defer",
    "deferred_failure",
]
DEFERRED = ["deferred_priority", "deferred_defer", "deferred_failure"]
# Sent by django-mailer before the upgrade: logged, never to be sent again.
SENT = ["sent", "sent_no_data"]
# Rows whose pickles would run a command (see django_mailer_side.poison) -> what refuses them.
SYSTEM = f"{os.system.__module__}.system"  # posix.system, as a pickle names os.system
POISON = {
    "os_system": f"the stored data is a {SYSTEM}, not an email message",
    "lazy_subject": f"a lazy value calls {SYSTEM}, which is not allowed",
    "header": f"the message's extra_headers refers to {SYSTEM}, not allowed",
    "attachment": "the message's attachments refers to builtins.eval, not allowed",
    "not_email": "the stored data is a dict, not an email message",
    "garbage": "not a readable pickle",
}
EXECUTES = ["os_system", "lazy_subject", "header", "attachment"]
# Headers that differ between any two sends of the same message.
PER_SEND = {"date", "message-id"}


# -- The databases --------------------------------------------------------------------


class Databases:
    """The test's own databases, on the server the suite uses (MAILER_TEST_DB)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.suite = settings.DATABASES["default"]
        self.vendor = self.suite["ENGINE"].rsplit(".", 1)[-1]
        # Django's own backend: django-mailer's virtualenv has not the suite's (tests/backends).
        self.engine = f"django.db.backends.{self.vendor}"
        self.created: list[str] = []

    def config(self, name: str) -> dict[str, Any]:
        """The DATABASES entry that reaches database ``name``."""
        if self.vendor == "sqlite3":
            return {"ENGINE": self.engine, "NAME": str(self.tmp / f"{name}.sqlite3")}
        keys = ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
        return {
            **{k: self.suite[k] for k in keys if k in self.suite},
            "ENGINE": self.engine,
            "NAME": name,
        }

    def _admin(self, statements: list[str]) -> list[tuple[Any, ...]]:
        """Run statements as the server's administrator; return the last one's rows."""
        rows: list[tuple[Any, ...]] = []
        if self.vendor == "postgresql":
            import psycopg

            with psycopg.connect(
                host=self.suite["HOST"],
                port=self.suite["PORT"],
                user=self.suite["USER"],
                dbname="postgres",
                autocommit=True,
            ) as conn:
                for statement in statements:
                    cursor = conn.execute(statement)
                    rows = cursor.fetchall() if cursor.description else []
            return rows
        import MySQLdb

        conn = MySQLdb.connect(
            host=self.suite["HOST"],
            port=int(self.suite["PORT"]),
            user=self.suite["USER"],
            passwd=self.suite.get("PASSWORD", ""),
            charset="utf8mb4",
        )
        try:
            cursor = conn.cursor()
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall())
            conn.commit()
        finally:
            conn.close()
        return rows

    def create(self, name: str) -> None:
        self.created.append(name)
        if self.vendor == "postgresql":
            self._admin([f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'])
        elif self.vendor == "mysql":
            self._admin(
                [
                    f"DROP DATABASE IF EXISTS `{name}`",
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
                ]
            )

    def copy(self, source: str, target: str) -> None:
        """Make ``target`` an identical copy of ``source`` (which nobody is connected to)."""
        self.created.append(target)
        if self.vendor == "sqlite3":
            shutil.copyfile(self.config(source)["NAME"], self.config(target)["NAME"])
        elif self.vendor == "postgresql":
            self._admin(
                [
                    f'DROP DATABASE IF EXISTS "{target}"',
                    f'CREATE DATABASE "{target}" TEMPLATE "{source}"',
                ]
            )
        else:
            self.create(target)
            tables = self._admin(
                [
                    "SELECT table_name FROM information_schema.tables "
                    f"WHERE table_schema = '{source}' AND table_type = 'BASE TABLE'"
                ]
            )
            statements = ["SET FOREIGN_KEY_CHECKS = 0"]
            for (table,) in tables:
                statements += [
                    f"CREATE TABLE `{target}`.`{table}` LIKE `{source}`.`{table}`",
                    f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`",
                ]
            self._admin(statements)

    def drop_all(self) -> None:
        for name in self.created:
            if self.vendor == "postgresql":
                self._admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])
            elif self.vendor == "mysql":
                self._admin([f"DROP DATABASE IF EXISTS `{name}`"])


# -- The two sides ----------------------------------------------------------------------


def django_mailer_python() -> str:
    """The interpreter of django-mailer's virtualenv; skip (fail in CI) without one."""
    python = os.environ.get(PYTHON_VARIABLE)
    if not python:
        message = (
            f"{PYTHON_VARIABLE} is not set: it names the Python of a virtualenv with "
            "django-mailer==2.3.2, Django 5.2 and the database drivers (scripts/test.sh makes one)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python


@dataclass
class Sides:
    """Runs the scripts of tests/upgrade in subprocesses, against one database each."""

    django_mailer: str
    databases: Databases
    tmp: Path

    def _run(self, argv: list[str], request: Any, database: str, **env: str) -> Any:
        environ = {
            k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE"}
        }
        environ.update(
            UPGRADE_DATABASE=json.dumps(self.databases.config(database)),
            UPGRADE_TMP=str(self.tmp),
            **env,
        )
        done = subprocess.run(
            argv,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=environ,
            cwd=self.tmp,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr}")
        return json.loads(done.stdout)

    def django_mailer_side(
        self, command: str, database: str, request: Any = None, **env: str
    ) -> Any:
        script = str(UPGRADE / "django_mailer_side.py")
        return self._run([self.django_mailer, script, command], request or {}, database, **env)

    def our_side(self, command: str, database: str, **env: str) -> Any:
        script = str(UPGRADE / "mailer_side.py")
        # The suite's warning filters (-W error on Django 6.1) hold for our side too.
        argv = [sys.executable, *(f"-W{option}" for option in sys.warnoptions), script, command]
        return self._run(argv, None, database, PYTHONPATH=str(SRC), **env)


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upgrade:
    tokens: dict[str, str]
    markers: dict[str, Path]  # created if our side runs a poisoned row's code
    controls: dict[str, Path]  # created when django-mailer reads the same data
    before: dict[str, Any]  # django-mailer's view, after it queued
    poison: dict[str, int]  # row ids of the poisoned rows
    migrated: dict[str, Any]  # our view, after migrate
    sent: dict[str, Any]  # our view, after send_mail
    ours: list[Received]
    theirs: list[Received]  # what django-mailer delivered from the copy


@pytest.fixture(scope="module")
def upgrade(smtp_server: SMTPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgrade]:
    python = django_mailer_python()
    tmp = tmp_path_factory.mktemp("upgrade")
    databases = Databases(tmp)
    sides = Sides(python, databases, tmp)
    theirs = SMTPServer().start()
    smtp_server.reset()
    main, copy = f"mailer_upgrade_{os.getpid()}", f"mailer_upgrade_{os.getpid()}_dm"
    tokens = {kind: token() for kind in [*WAITING, *SENT]}
    markers = {name: tmp / f"executed-{name}" for name in POISON}
    controls = {name: tmp / f"control-{name}" for name in POISON}
    try:
        databases.create(main)
        before = sides.django_mailer_side(
            "queue", main, {"tokens": tokens, "closed_port": closed_port()}
        )
        databases.copy(main, copy)
        poison = sides.django_mailer_side(
            "poison",
            main,
            {
                "markers": {k: str(v) for k, v in markers.items()},
                "controls": {k: str(v) for k, v in controls.items()},
            },
        )
        migrated = sides.our_side("migrate", main)
        sent = sides.our_side("send", main, UPGRADE_SMTP_PORT=str(smtp_server.port))
        sides.django_mailer_side("send", copy, UPGRADE_SMTP_PORT=str(theirs.port))
        yield Upgrade(
            tokens,
            markers,
            controls,
            before,
            poison,
            migrated,
            sent,
            list(smtp_server.received),
            list(theirs.received),
        )
    finally:
        theirs.stop()
        smtp_server.reset()
        databases.drop_all()


# -- Comparing two deliveries ----------------------------------------------------------------


def anatomy(received: Received, *, across_versions: bool) -> dict[str, Any]:
    """A delivered message as what it says: envelope, headers and every part, decoded.

    Leaves out what differs between two sends of one message (Date,
    Message-ID, MIME boundaries) and how a part is encoded for transport
    (Content-Transfer-Encoding): payloads are compared decoded, byte for byte.
    ``across_versions`` (django-mailer ran on Django 5.2, we on 6.1) also leaves
    out what Django 6's email API writes differently for the same message:
    MIME-Version in subparts, the line break ending every text part, and
    whitespace around header values.
    """
    message: ParsedMessage = email.message_from_bytes(received.data, policy=email.policy.default)  # type: ignore[assignment]
    parts = []
    for part in message.walk():
        headers = []
        for name, value in part.items():
            key = name.lower()
            if key in PER_SEND or key == "content-transfer-encoding":
                continue
            if across_versions and key == "mime-version" and part is not message:
                continue
            if hasattr(value, "params"):  # Content-Type, Content-Disposition
                params = {k: v for k, v in value.params.items() if k != "boundary"}
                headers.append((key, value.split(";")[0].strip().lower(), sorted(params.items())))
            else:
                headers.append((key, str(value).strip() if across_versions else str(value), []))
        payload = None if part.is_multipart() else part.get_payload(decode=True)
        if across_versions and payload is not None and part.get_content_maintype() == "text":
            payload = payload.removesuffix(b"\r\n")
        parts.append({"headers": sorted(headers), "payload": payload})
    return {"from": received.mail_from, "to": sorted(received.rcpt_tos), "parts": parts}


def masked(data: bytes) -> bytes:
    """The bytes of a delivered message with Date, Message-ID and boundaries blanked."""
    for number, boundary in enumerate(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', data))):
        data = data.replace(boundary, b"boundary-%d" % number)
    return re.sub(rb"^(Date|Message-ID): .*$", rb"\1: -", data, flags=re.MULTILINE)


def by_token(received: list[Received]) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = {}
    for item in received:
        assert item.token, f"a message without a token arrived:\n{item.data[:500]!r}"
        found.setdefault(item.token, []).append(item)
    return found


# -- The tests ------------------------------------------------------------------------------


@pytest.mark.slow
class TestUpgradeFromDjangoMailer:
    def test_our_migrations_continue_from_django_mailers(self, upgrade: Upgrade) -> None:
        assert upgrade.before["migrations"] == DJANGO_MAILER_MIGRATIONS
        assert upgrade.migrated["migrations"] == [
            *DJANGO_MAILER_MIGRATIONS,
            "0008_queue_schema",
            "0009_convert_django_mailer_data",
            "0010_task_wakeup",
            "0011_idempotency_keys",
            "0012_esp_provider_ids",
            "0013_feedback_suppression_quotas",
            "0014_adminfit_log_subject_and_runs",
        ]

    def test_every_waiting_message_is_delivered_exactly_once(self, upgrade: Upgrade) -> None:
        ours = by_token(upgrade.ours)
        for kind in WAITING:
            copies = ours.get(upgrade.tokens[kind], [])
            assert len(copies) == 1, f"{kind} arrived {len(copies)} times"
        for kind in SENT:
            assert upgrade.tokens[kind] not in ours, f"{kind} was sent before the upgrade"
        assert len(upgrade.ours) == len(WAITING), "something else arrived"

    def test_each_message_says_what_django_mailer_delivers(self, upgrade: Upgrade) -> None:
        ours, theirs = by_token(upgrade.ours), by_token(upgrade.theirs)
        assert sorted(theirs) == sorted(upgrade.tokens[kind] for kind in WAITING), (
            "django-mailer's own delivery of the copy is the reference; it must be complete"
        )
        across = upgrade.before["django"] != list(django.VERSION[:2])
        for kind in WAITING:
            (mine,) = ours[upgrade.tokens[kind]]
            (reference,) = theirs[upgrade.tokens[kind]]
            assert anatomy(mine, across_versions=across) == anatomy(
                reference, across_versions=across
            ), kind

    @pytest.mark.before_mailers  # django-mailer's virtualenv runs Django 5.2: same rendering
    def test_on_the_same_django_each_message_has_the_same_bytes(self, upgrade: Upgrade) -> None:
        assert upgrade.before["django"] == list(django.VERSION[:2])
        ours, theirs = by_token(upgrade.ours), by_token(upgrade.theirs)
        for kind in WAITING:
            (mine,) = ours[upgrade.tokens[kind]]
            (reference,) = theirs[upgrade.tokens[kind]]
            assert masked(mine.data) == masked(reference.data), kind

    def test_lazy_subjects_are_translated_as_django_mailer_would(self, upgrade: Upgrade) -> None:
        (received,) = by_token(upgrade.ours)[upgrade.tokens["lazy"]]
        assert received.message["Subject"] == "Dieses Feld ist zwingend erforderlich."

    def test_deferred_mail_is_due_again(self, upgrade: Upgrade) -> None:
        before = {m["id"]: m for m in upgrade.before["messages"]}
        deferred = [
            m for m in upgrade.migrated["messages"] if before.get(m["id"], {}).get("priority") == 4
        ]
        assert len(deferred) == len(DEFERRED)
        for row in deferred:
            assert (row["status"], row["due"], row["priority"]) == ("deferred", True, 2), row

    def test_nothing_is_left_but_the_refused_rows(self, upgrade: Upgrade) -> None:
        left = {m["id"] for m in upgrade.sent["messages"]}
        assert left == {upgrade.poison[name] for name in POISON}
        assert all(m["json"] for m in upgrade.migrated["messages"] if m["status"] != "failed")
        assert upgrade.migrated["legacy_loaded"], "the migration converts with mailer.legacy"
        assert not upgrade.sent["legacy_loaded"], "send_mail must never read a pickle"

    def test_old_log_rows_survive_and_read_correctly(self, upgrade: Upgrade) -> None:
        old = {log["id"]: log for log in upgrade.before["logs"]}
        after = {log["id"]: log for log in upgrade.sent["logs"]}
        for pk, log in old.items():
            survived = dict(after[pk])
            assert survived.pop("email_subject") == log["subject"]
            # The logged message as it was sent: no Message-ID made up for it.
            assert survived.pop("data_message_id") == (
                log["message_id"] if log["has_data"] else None
            )
            assert survived == log
        assert [log["result"] for log in old.values()] == ["3", "1", "1"]
        assert old[1]["subject"] == f"Bounced {upgrade.tokens['deferred_failure']}"
        assert old[2]["to"] == ["judy@example.com"] and old[2]["message_id"]

    def test_new_log_rows_record_each_delivery(self, upgrade: Upgrade) -> None:
        old = {log["id"] for log in upgrade.before["logs"]} | {upgrade.poison["log"]}
        new = [log for log in upgrade.sent["logs"] if log["id"] not in old]
        assert sorted(log["result"] for log in new) == ["1"] * len(WAITING)
        delivered = {str(r.message["Message-ID"]) for r in upgrade.ours}
        assert {log["message_id"] for log in new} == delivered

    def test_dont_send_entries_survive(self, upgrade: Upgrade) -> None:
        assert upgrade.sent["dont_send"] == upgrade.before["dont_send"]
        assert [e["to_address"] for e in upgrade.sent["dont_send"]] == [
            "blocked@example.com",
            "Opt.Out@Example.com",
        ]

    def test_pickles_that_name_code_are_refused_and_never_run(self, upgrade: Upgrade) -> None:
        ran_there = sorted(name for name, marker in upgrade.controls.items() if marker.exists())
        assert ran_there == sorted(EXECUTES), "django-mailer runs these when it reads them"
        ran = [name for name, marker in upgrade.markers.items() if marker.exists()]
        assert not ran, f"the data of {ran} was executed"
        rows = {m["id"]: m for m in upgrade.sent["messages"]}
        for name, reason in POISON.items():
            row = rows[upgrade.poison[name]]
            assert (row["status"], row["due"]) == ("failed", False), name
            assert reason in row["last_reply"], (name, row["last_reply"])
            assert row["last_reply"].startswith("django-mailer data could not be converted")
        log = {log["id"]: log for log in upgrade.sent["logs"]}[upgrade.poison["log"]]
        assert log["has_data"] and log["subject"] is None, "kept as it was, never unpickled"
        assert all("victim@example.com" not in r.rcpt_tos for r in upgrade.ours)


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    """``makemigrations --check`` finds nothing to write, on every supported Django."""
    call_command("makemigrations", "mailer", check=True, dry_run=True, verbosity=0)


# -- The conversion migration, on the suite's database ----------------------------------------

CONVERSION = importlib.import_module("mailer.migrations.0009_convert_django_mailer_data")


def convert() -> None:
    """Run 0009's conversion on the suite's database, as ``migrate`` would."""
    editor = SimpleNamespace(connection=connection)
    CONVERSION.convert_messages(django_apps, editor)
    CONVERSION.convert_logs(django_apps, editor)


@pytest.mark.django_db
class TestConversion:
    def legacy_rows(self, count: int, size: int = 0) -> list[Message]:
        """Rows as django-mailer left them: a pickle each, no queue state yet."""
        messages = [samples.plain() for _ in range(count)]
        for message in messages:
            if size:
                message.attach("big.bin", os.urandom(size), "application/octet-stream")
        return Message.objects.bulk_create(
            (
                Message(message_data=as_django_mailer_stored(m), status="queued", due_at=None)
                for m in messages
            ),
            batch_size=1 if size else None,
        )

    def test_each_pickle_is_read_once_in_batches(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(CONVERSION, "BATCH", 3)
        reads: list[str] = []
        unpickle = legacy.unpickle
        monkeypatch.setattr(legacy, "unpickle", lambda data: reads.append(data) or unpickle(data))
        rows = self.legacy_rows(7)
        MessageLog.objects.bulk_create(
            MessageLog(
                message_data=row.message_data, when_added=row.when_added, priority=2, result="1"
            )
            for row in rows[:4]
        )
        with CaptureQueriesContext(connection) as queries:
            convert()
        reads_of = {
            table: [
                q
                for q in queries
                if q["sql"].startswith("SELECT")
                and f"FROM {connection.ops.quote_name(table)}" in q["sql"]
            ]
            for table in ("mailer_message", "mailer_messagelog")
        }
        assert len(reads) == 7 + 4, "each pickle is read once"
        # Three messages per batch: 3 + 3 + 1, then an empty read; logs: 3 + 1, then empty.
        assert [len(reads_of[t]) for t in reads_of] == [4, 3]
        assert all(not legacy.is_legacy(m.message_data) for m in Message.objects.all())
        assert all(not legacy.is_legacy(log.message_data) for log in MessageLog.objects.all())
        convert()
        assert len(reads) == 11, "converted rows are not read again"

    @pytest.mark.slow
    @pytest.mark.mariadb_only  # only MariaDB limits the size of a statement (max_allowed_packet)
    def test_a_batch_larger_than_one_statement_may_be(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            (limit,) = cursor.fetchone()
        if limit > 64 * 1024 * 1024:
            pytest.skip(f"max_allowed_packet is {limit} bytes: too much data to exceed it here")
        self.legacy_rows(3, size=limit // 3)  # each row fits, the batch together does not
        convert()
        statuses = list(Message.objects.values_list("status", "last_reply"))
        assert statuses == [("queued", "")] * 3

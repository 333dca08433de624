"""A first run that explains itself: a project that has not run ``migrate`` is told so,
in one line, by the check, the API and every command; bad recipient lists raise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

import mailer
from mailer.engine import send_all
from mailer.exceptions import InvalidAddress, MailerError, TablesMissing
from mailer.models import Message, MessageLog
from mailer.queue.schema import migration_names, unapplied_migrations

from . import processes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def never_migrated(transactional_db: None) -> Iterator[None]:
    """The test database as a project has it before its first ``migrate``: no mailer tables."""
    call_command("migrate", "mailer", "zero", verbosity=0)
    try:
        yield
    finally:
        call_command("migrate", "mailer", verbosity=0)


def migration_warnings() -> list[Any]:
    return [
        m for m in run_checks(tags=[Tags.database], databases=["default"]) if m.id == "mailer.W050"
    ]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


class TestTheSystemCheck:
    def test_reports_unapplied_migrations_with_the_hint_to_migrate(
        self, never_migrated: None
    ) -> None:
        (warning,) = migration_warnings()
        assert "migrations of mailer are not applied" in warning.msg
        assert "0001_initial" in warning.msg
        assert "python manage.py migrate" in warning.hint

    def test_says_nothing_once_migrated(self) -> None:
        assert migration_warnings() == []

    def test_names_the_one_migration_missing_from_the_history(self) -> None:
        """Only mailer's rows of the history are read: one of them missing is reported."""
        latest = migration_names()[-1]
        MigrationRecorder(connection).record_unapplied("mailer", latest)
        try:
            assert unapplied_migrations() == [latest]
            (warning,) = migration_warnings()
            assert f"1 migration of mailer is not applied ({latest})" in warning.msg
        finally:
            MigrationRecorder(connection).record_applied("mailer", latest)
        assert unapplied_migrations() == []

    def test_every_migration_on_disk_is_one_django_knows(self) -> None:
        """The check reads names, not the migration graph: that holds while mailer has no
        squashed migration (one that replaces others would be reported as unapplied)."""
        graph = MigrationLoader(None, ignore_no_migrations=True).graph
        known = sorted(name for app, name in graph.nodes if app == "mailer")
        assert migration_names() == known
        for name in known:
            assert not graph.nodes[("mailer", name)].replaces, name

    def test_is_a_database_check_not_run_without_a_database(self, never_migrated: None) -> None:
        assert [m for m in run_checks() if m.id == "mailer.W050"] == []

    def test_manage_py_check_with_the_database_reports_it(
        self, never_migrated: None, smtp: Any
    ) -> None:
        done = processes.run(["check", "--database", "default"], smtp.port)
        assert done.returncode == 0, done.stderr  # a warning: migrate must still run
        assert "mailer.W050" in done.stderr + done.stdout


class TestQueueingIntoMissingTables:
    def test_mailers_send_mail_raises_an_error_that_says_so(self, never_migrated: None) -> None:
        with pytest.raises(TablesMissing, match=r"manage\.py migrate") as raised:
            mailer.send_mail("S", "B", "f@example.com", ["t@example.com"])
        assert isinstance(raised.value, MailerError)
        assert isinstance(raised.value, DatabaseError)  # what code written for Django catches
        assert "mailer_" in str(raised.value)

    def test_djangos_send_mail_through_the_backend_raises_it_too(
        self, never_migrated: None, queue_config: None
    ) -> None:
        with pytest.raises(TablesMissing, match=r"manage\.py migrate"):
            mail.send_mail("S", "B", "f@example.com", ["t@example.com"])

    def test_inside_the_callers_transaction_too(self, never_migrated: None) -> None:
        with pytest.raises(TablesMissing), transaction.atomic():
            mailer.send_mail("S", "B", "f@example.com", ["t@example.com"])

    def test_send_all_from_python_says_so_at_once(self, never_migrated: None) -> None:
        started = time.monotonic()
        with pytest.raises(TablesMissing, match=r"manage\.py migrate"):
            send_all()
        # Not taken for a database that stopped answering (retried for
        # MAILER_RECORD_TIMEOUT, 20 s by default).
        assert time.monotonic() - started < 10

    def test_other_database_errors_are_left_as_they_are(self) -> None:
        error = DatabaseError("deadlock detected")
        assert TablesMissing.from_error(error) is None


class TestCommandsOnMissingTables:
    @pytest.mark.parametrize(
        "argv",
        [
            ["send_mail"],
            ["send_mail", "--cron", "1"],
            ["retry_deferred"],
            ["purge_mail_log", "7"],
            ["mailer_status"],
        ],
    )
    def test_print_one_line_and_exit_1(
        self, argv: list[str], never_migrated: None, smtp: Any
    ) -> None:
        done = processes.run(argv, smtp.port)
        assert done.returncode == 1
        assert done.stdout == ""
        line = one_line(done.stderr)
        assert "mailer's database tables are missing" in line
        assert "python manage.py migrate" in line

    def test_runmailer_exits_1_instead_of_waiting_for_ever(
        self, never_migrated: None, smtp: Any
    ) -> None:
        started = time.monotonic()
        worker = processes.start(["runmailer"], smtp.port)
        code, _out, err = processes.wait(worker, timeout=60)
        assert code == 1
        line = one_line(err)
        assert "migrations of mailer are not applied" in line
        assert "python manage.py migrate" in line
        assert time.monotonic() - started < 60

    def test_once_migrated_they_work(self, smtp: Any) -> None:
        done = processes.run(["send_mail"], smtp.port)
        assert done.returncode == 0, done.stderr


class TestBadRecipientListsThroughDjango:
    """What the README promises for Django's own functions: a bad list raises, and
    nothing is queued."""

    @pytest.fixture(autouse=True)
    def _backend(self, queue_config: None) -> None:
        pass

    @pytest.mark.parametrize(
        "recipients",
        [["ok@example.com", None], [None, "ok@example.com"], ["ok@example.com", ""]],
    )
    def test_send_mail_with_a_bad_address_among_good_ones(self, recipients: list[Any]) -> None:
        with pytest.raises(InvalidAddress):
            mail.send_mail("s", "b", None, recipients)
        assert Message.objects.count() == 0

    def test_send_mass_mail_with_none(self) -> None:
        with pytest.raises(InvalidAddress):
            mail.send_mass_mail([("s", "b", None, [None]), ("s", "b", None, ["ok@example.com"])])
        assert Message.objects.count() == 0

    def test_a_none_cc_on_an_email_message(self) -> None:
        message = mail.EmailMessage("s", "b", None, ["ok@example.com"], cc=[None])
        with pytest.raises(InvalidAddress):
            message.send()
        assert Message.objects.count() == 0

    def test_a_string_for_a_list_is_refused_by_django_itself(self) -> None:
        with pytest.raises(TypeError):
            mail.send_mail("s", "b", None, "ok@example.com")  # type: ignore[arg-type]
        assert Message.objects.count() == 0

    def test_a_list_of_nothing_but_none_never_reaches_any_backend(self) -> None:
        # Django's EmailMessage.send() returns 0 before it asks for a connection when no
        # recipient is left (README: "Bad input"); mailer.send_mail raises instead.
        assert mail.send_mail("s", "b", None, [None]) == 0
        assert Message.objects.count() == 0 and MessageLog.objects.count() == 0
        with pytest.raises(InvalidAddress):
            mailer.send_mail("s", "b", None, [None])  # type: ignore[list-item]

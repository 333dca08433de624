"""System checks: every misconfiguration README.md's table lists is reported, with a hint."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections

from mailer.backend import DbBackend

from .processes import another_users_directory

ROOT = Path(__file__).resolve().parents[1]
CHECK_ID = re.compile(r"mailer\.[EW]\d{3}")


class QueueingSubclass(DbBackend):
    """A project's own DbBackend subclass: queueing all the same."""


NOT_CALLABLE = "a string"


def classify_nothing(exc: BaseException) -> None:
    return None


def mailer_checks() -> list[CheckMessage]:
    return [m for m in run_checks(tags=["mailer"]) if str(m.id).startswith("mailer.")]


def reported(check_id: str) -> list[CheckMessage]:
    """The messages with ``check_id``; each must say how to fix it."""
    found = [m for m in mailer_checks() if m.id == check_id]
    for message in found:
        assert message.hint, f"{check_id} has no hint: {message.msg}"
    return found


def the_one(check_id: str) -> CheckMessage:
    found = reported(check_id)
    assert len(found) == 1, f"expected one {check_id}, got {mailer_checks()}"
    return found[0]


def queued_through(alias: str, **options: Any) -> dict[str, Any]:
    return {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": alias, **options}}


class TestACorrectConfiguration:
    def test_passes_in_this_runs_style(self) -> None:
        assert mailer_checks() == []

    def test_passes_in_the_email_backend_style(self, legacy_style: None) -> None:
        assert mailer_checks() == []

    def test_passes_with_several_queueing_aliases(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "urgent": queued_through("ses", priority="high"),
            "ses": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        }
        assert mailer_checks() == []

    @pytest.mark.django_db  # the full check command looks at the database too
    def test_passes_check_command(self) -> None:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())


class TestDeliveryLoop:
    """mailer.E001: queued mail would be delivered through the queue itself."""

    def test_mailer_email_backend_set_to_dbbackend(self, legacy_style: None, settings: Any) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        error = the_one("mailer.E001")
        assert error.obj == "MAILER_EMAIL_BACKEND"
        assert "MAILER_EMAIL_BACKEND" in error.msg

    def test_mailer_email_backend_set_to_a_dbbackend_subclass(
        self, legacy_style: None, settings: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = f"{__name__}.QueueingSubclass"
        the_one("mailer.E001")

    @pytest.mark.parametrize("target", ["default", "other"])
    def test_a_mailers_alias_delivering_through_a_dbbackend(
        self, mailers_style: dict[str, Any], settings: Any, target: str
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "default": queued_through(target),
            "other": queued_through("smtp"),
        }
        error = the_one("mailer.E001")
        assert error.obj == "MAILERS['default']"
        assert f"MAILERS['default']['OPTIONS']['mailer'] is {target!r}" in error.msg

    def test_stops_the_check_command(self, legacy_style: None, settings: Any) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        # Only our tag: Django 6.1's own mail check trips over a MAILERS deleted by
        # override_settings, which real projects never do.
        with pytest.raises(SystemCheckError, match=r"mailer\.E001"):
            call_command("check", tag=["mailer"], stdout=io.StringIO(), stderr=io.StringIO())


class TestBadSettings:
    """mailer.E002: a MAILER_* setting has the wrong type or value."""

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("MAILER_EMAIL_MAX_BATCH", "ten"),
            ("MAILER_PAUSE_SEND", "no"),
            ("MAILER_DEFAULT_PRIORITY", "urgent"),
            ("MAILER_MESSAGE_CLASSES", "anymail.message.AnymailMessage"),
            ("MAILER_LEASE_SECONDS", 0),
        ],
    )
    def test_is_reported_naming_the_setting(self, settings: Any, name: str, value: Any) -> None:
        setattr(settings, name, value)
        error = the_one("mailer.E002")
        assert error.obj == name
        assert name in error.msg

    def test_every_bad_setting_is_reported(self, settings: Any) -> None:
        settings.MAILER_WORKERS = 0
        settings.MAILER_CONCURRENCY = "4"
        assert sorted(m.obj for m in reported("mailer.E002")) == [
            "MAILER_CONCURRENCY",
            "MAILER_WORKERS",
        ]

    def test_a_bad_setting_is_not_reported_twice(self, legacy_style: None, settings: Any) -> None:
        settings.MAILER_USE_FILE_LOCK = "yes"
        settings.MAILER_EMAIL_BACKEND = 42
        settings.MAILER_ERROR_HANDLER = None
        assert {m.id for m in mailer_checks()} == {"mailer.E002"}


class TestUnimportableBackend:
    """mailer.E003: a delivery backend cannot be imported."""

    def test_mailer_email_backend(self, legacy_style: None, settings: Any) -> None:
        settings.MAILER_EMAIL_BACKEND = "no_such_package.mail.EmailBackend"
        error = the_one("mailer.E003")
        assert error.obj == "MAILER_EMAIL_BACKEND"
        assert "no_such_package" in error.msg

    def test_a_mailers_alias(self, mailers_style: dict[str, Any], settings: Any) -> None:
        settings.MAILERS = {**mailers_style, "smtp": {"BACKEND": "anymail.backends.nope.Backend"}}
        error = the_one("mailer.E003")
        assert error.obj == "MAILERS['smtp']"
        assert "anymail.backends.nope.Backend" in error.msg

    def test_a_backend_whose_module_fails_on_import(
        self, legacy_style: None, settings: Any, tmp_path: Path, monkeypatch: Any
    ) -> None:
        (tmp_path / "broken_mail_backend.py").write_text("raise RuntimeError('no API key')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        settings.MAILER_EMAIL_BACKEND = "broken_mail_backend.EmailBackend"
        assert "RuntimeError: no API key" in the_one("mailer.E003").msg


class TestQueueingAliasOptions:
    """mailer.E004: a DbBackend entry of MAILERS has bad OPTIONS."""

    def test_no_mailer_option(self, mailers_style: dict[str, Any], settings: Any) -> None:
        settings.MAILERS = {**mailers_style, "default": {"BACKEND": "mailer.backend.DbBackend"}}
        error = the_one("mailer.E004")
        assert error.obj == "MAILERS['default']"
        assert "smtp" in str(error.hint)  # it suggests the aliases there are

    def test_an_unknown_mailer_alias(self, mailers_style: dict[str, Any], settings: Any) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smpt")}
        error = the_one("mailer.E004")
        assert "'smpt', but MAILERS has no such alias" in error.msg

    def test_a_bad_priority(self, mailers_style: dict[str, Any], settings: Any) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smtp", priority="asap")}
        error = the_one("mailer.E004")
        assert "MAILERS['default']['OPTIONS']['priority']" in error.msg


class TestErrorHandling:
    """mailer.E005: the error handler or a classifier cannot be imported."""

    def test_an_unimportable_error_handler(self, settings: Any) -> None:
        settings.MAILER_ERROR_HANDLER = "myproject.mail.no_such_handler"
        error = the_one("mailer.E005")
        assert error.obj == "MAILER_ERROR_HANDLER"

    def test_a_classifier_that_is_not_callable(self, settings: Any) -> None:
        settings.MAILER_ERROR_CLASSIFIERS = [
            f"{__name__}.classify_nothing",
            f"{__name__}.NOT_CALLABLE",
        ]
        error = the_one("mailer.E005")
        assert "NOT_CALLABLE" in error.msg and "not callable" in error.msg

    def test_the_default_handler_is_fine(self, settings: Any) -> None:
        settings.MAILER_ERROR_HANDLER = "mailer.engine.handle_backend_exception"
        assert reported("mailer.E005") == []


class TestSeveralWorkersOnSQLite:
    """mailer.W001: several workers on SQLite."""

    @pytest.mark.parametrize(("workers", "concurrency"), [(2, 1), (1, 4), (3, 3)])
    def test_is_a_warning_on_sqlite_only(
        self, settings: Any, workers: int, concurrency: int
    ) -> None:
        settings.MAILER_WORKERS = workers
        settings.MAILER_CONCURRENCY = concurrency
        warnings = reported("mailer.W001")
        if connections["default"].vendor == "sqlite":
            assert len(warnings) == 1
            assert "SQLite" in warnings[0].msg
        else:
            assert warnings == []

    def test_one_worker_with_one_connection_is_fine(self, settings: Any) -> None:
        settings.MAILER_WORKERS = 1
        settings.MAILER_CONCURRENCY = 1
        assert reported("mailer.W001") == []


class TestLockPath:
    """mailer.W002: the send_mail lock file cannot be created or written."""

    def test_a_directory_that_does_not_exist(self, settings: Any, tmp_path: Path) -> None:
        settings.MAILER_LOCK_PATH = str(tmp_path / "missing" / "mailer")
        warning = the_one("mailer.W002")
        assert "does not exist" in warning.msg

    def test_a_parent_that_is_a_file(self, settings: Any, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("")
        settings.MAILER_LOCK_PATH = str(tmp_path / "file" / "mailer")
        the_one("mailer.W002")

    def test_a_lock_file_that_is_a_directory(self, settings: Any, tmp_path: Path) -> None:
        (tmp_path / "mailer.lock").mkdir()
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        assert "not a file" in the_one("mailer.W002").msg

    def test_is_not_checked_without_the_file_lock(self, settings: Any, tmp_path: Path) -> None:
        settings.MAILER_LOCK_PATH = str(tmp_path / "missing" / "mailer")
        settings.MAILER_USE_FILE_LOCK = False
        assert reported("mailer.W002") == []

    def test_a_writable_directory_is_fine(self, settings: Any, tmp_path: Path) -> None:
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        assert reported("mailer.W002") == []

    def test_the_default_path_is_fine(self, settings: Any) -> None:
        settings.MAILER_LOCK_PATH = None
        assert reported("mailer.W002") == reported("mailer.W030") == []

    def test_a_default_directory_not_made_yet_is_fine(
        self, default_lock_dir: Path, tmp_path: Path
    ) -> None:
        assert reported("mailer.W002") == reported("mailer.W030") == []
        assert list(tmp_path.iterdir()) == []  # the check creates nothing


class TestUnsafeLockPath:
    """mailer.W030: the send_mail lock could be replaced or held by another user."""

    @pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
    def test_a_directory_others_may_write(self, settings: Any, tmp_path: Path, mode: int) -> None:
        tmp_path.chmod(mode)
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        warning = the_one("mailer.W030")
        assert "writable by group or others" in warning.msg
        assert warning.obj == "MAILER_LOCK_PATH"
        assert reported("mailer.W002") == []

    def test_a_directory_of_another_user(self, settings: Any, tmp_path: Path) -> None:
        settings.MAILER_LOCK_PATH = str(another_users_directory(tmp_path) / "mailer")
        assert "belongs to another user" in the_one("mailer.W030").msg

    def test_a_symbolic_link_where_the_lock_goes(self, settings: Any, tmp_path: Path) -> None:
        (tmp_path / "mailer.lock").symlink_to(tmp_path / "nowhere")
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        assert "is a symbolic link" in the_one("mailer.W030").msg

    def test_a_symlinked_default_directory(self, default_lock_dir: Path, tmp_path: Path) -> None:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        default_lock_dir.symlink_to(tmp_path / "elsewhere")
        assert "is a symbolic link" in the_one("mailer.W030").msg

    def test_a_lock_file_others_may_write(self, settings: Any, tmp_path: Path) -> None:
        (tmp_path / "mailer.lock").write_text("")
        (tmp_path / "mailer.lock").chmod(0o666)
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        assert "writable by group or others" in the_one("mailer.W030").msg

    def test_a_private_directory_is_fine(self, settings: Any, tmp_path: Path) -> None:
        tmp_path.chmod(0o700)
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        assert reported("mailer.W030") == []

    def test_is_not_checked_without_the_file_lock(self, settings: Any, tmp_path: Path) -> None:
        tmp_path.chmod(0o777)
        settings.MAILER_LOCK_PATH = str(tmp_path / "mailer")
        settings.MAILER_USE_FILE_LOCK = False
        assert reported("mailer.W030") == []


class TestTasks:
    def test_a_missing_tasks_framework(
        self, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """mailer.E006: MAILER_TASKS_ENQUEUE_ON_COMMIT without a Tasks framework."""
        from mailer.compat import HAS_TASKS

        settings.MAILER_TASKS_ENQUEUE_ON_COMMIT = True
        monkeypatch.delitem(sys.modules, "mailer.tasks", raising=False)
        # An entry of None makes the import fail, as if the package were not installed.
        monkeypatch.setitem(sys.modules, "django.tasks" if HAS_TASKS else "django_tasks", None)
        message = the_one("mailer.E006")
        assert "ModuleNotFoundError" in message.msg
        assert "django-tasks" in str(message.hint)

    def test_is_not_checked_with_the_setting_off(
        self, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from mailer.compat import HAS_TASKS

        monkeypatch.delitem(sys.modules, "mailer.tasks", raising=False)
        monkeypatch.setitem(sys.modules, "django.tasks" if HAS_TASKS else "django_tasks", None)
        assert reported("mailer.E006") == []

    @pytest.mark.tasks
    def test_a_backend_that_cannot_run_tasks_later(self, settings: Any) -> None:
        """mailer.W005: the Tasks backend has no run_after (Django 6's default, immediate)."""
        from mailer.compat import HAS_TASKS

        package = "django.tasks" if HAS_TASKS else "django_tasks"  # DJANGO_COMPAT(<6.0)
        settings.TASKS = {"default": {"BACKEND": f"{package}.backends.immediate.ImmediateBackend"}}
        settings.MAILER_TASKS_ENQUEUE_ON_COMMIT = True
        assert "ImmediateBackend" in the_one("mailer.W005").msg

    @pytest.mark.tasks
    def test_the_database_backend_is_fine(self, settings: Any) -> None:
        settings.MAILER_TASKS_ENQUEUE_ON_COMMIT = True
        assert reported("mailer.E006") == reported("mailer.W005") == []


class TestIgnoredSettings:
    def test_mailer_email_backend_with_mailers(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        """mailer.W003: MAILER_EMAIL_BACKEND is set, but MAILERS decides."""
        settings.MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        assert the_one("mailer.W003").obj == "MAILER_EMAIL_BACKEND"

    @pytest.mark.before_mailers  # DJANGO_COMPAT(<6.1)
    def test_mailers_before_django_6_1(self, settings: Any) -> None:
        """mailer.W004: MAILERS is set, but this Django version ignores it."""
        settings.MAILERS = {"default": queued_through("smtp")}
        the_one("mailer.W004")
        assert [m.id for m in mailer_checks()] == ["mailer.W004"]


class TestIdempotencyWindow:
    """mailer.W040: an idempotency key may expire while its message is still retried."""

    def test_a_window_shorter_than_the_message_age(self, settings: Any) -> None:
        settings.MAILER_IDEMPOTENCY_WINDOW = 3600
        settings.MAILER_MAX_MESSAGE_AGE = 86400
        warning = the_one("mailer.W040")
        assert "3600" in warning.msg and "86400" in warning.msg

    @pytest.mark.parametrize(("window", "age"), [(86400, 86400), (86400, 3600), (60, None)])
    def test_a_window_as_long_or_no_age_limit_is_fine(
        self, settings: Any, window: float, age: float | None
    ) -> None:
        settings.MAILER_IDEMPOTENCY_WINDOW = window
        settings.MAILER_MAX_MESSAGE_AGE = age
        assert reported("mailer.W040") == []

    def test_the_defaults_are_fine(self) -> None:
        assert reported("mailer.W040") == []

    def test_a_bad_window_is_left_to_e002(self, settings: Any) -> None:
        settings.MAILER_IDEMPOTENCY_WINDOW = 0
        assert reported("mailer.W040") == []
        assert the_one("mailer.E002").obj == "MAILER_IDEMPOTENCY_WINDOW"


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # DJANGO_COMPAT(<6.1)
class TestProviderBackend:
    """mailer.W045: a django-anymail delivery backend that cannot be made as configured."""

    POSTMARK = "anymail.backends.postmark.EmailBackend"

    def test_a_missing_api_key_in_the_legacy_style(self, legacy_style: None, settings: Any) -> None:
        settings.MAILER_EMAIL_BACKEND = self.POSTMARK
        settings.ANYMAIL = {}
        warning = the_one("mailer.W045")
        assert warning.obj == "MAILER_EMAIL_BACKEND"
        assert "POSTMARK_SERVER_TOKEN" in warning.msg

    def test_a_complete_legacy_configuration_is_fine(
        self, legacy_style: None, settings: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = self.POSTMARK
        settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token"}
        assert reported("mailer.W045") == []

    def test_a_missing_option_under_mailers(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "default": queued_through("postmark"),
            "postmark": {"BACKEND": self.POSTMARK, "OPTIONS": {}},
        }
        warning = the_one("mailer.W045")
        assert warning.obj == "MAILERS['postmark']" and "server_token" in warning.msg

    def test_a_complete_mailers_alias_is_fine(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "default": queued_through("postmark"),
            "postmark": {"BACKEND": self.POSTMARK, "OPTIONS": {"server_token": "token"}},
        }
        assert reported("mailer.W045") == []


class TestUnappliedMigrations:
    """mailer.W050 is a database check: tests/test_first_run.py runs it on a database
    without mailer's tables; here, on this run's migrated test database."""

    @pytest.mark.django_db
    def test_a_migrated_database_is_fine(self) -> None:
        found = run_checks(tags=["database"], databases=["default"])
        assert [m for m in found if m.id == "mailer.W050"] == []


class TestDocumented:
    def test_the_readme_lists_every_check_id_and_no_other(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        table = readme.split("\n## System checks\n", 1)[1].split("\n## ", 1)[0]
        source = (ROOT / "src" / "mailer" / "checks" / "__init__.py").read_text(encoding="utf-8")
        assert sorted(set(CHECK_ID.findall(table))) == sorted(set(CHECK_ID.findall(source)))

    def test_every_check_id_is_tested_here(self) -> None:
        source = (ROOT / "src" / "mailer" / "checks" / "__init__.py").read_text(encoding="utf-8")
        tests = Path(__file__).read_text(encoding="utf-8")
        untested = set(CHECK_ID.findall(source)) - set(CHECK_ID.findall(tests))
        assert not untested, f"no test for {sorted(untested)}"


class TestQuotas:
    """mailer.W055: a quota for an alias that delivers no queued mail limits nothing."""

    @pytest.mark.usefixtures("legacy_style")
    def test_without_mailers_the_one_key_is_default(self, settings: Any) -> None:
        settings.MAILER_QUOTAS = {"default": {"per_day": 10}, "ses": {"per_day": 10}}
        warning = the_one("mailer.W055")
        assert "'ses'" in warning.msg

    def test_with_mailers_a_key_is_an_alias_that_delivers(
        self, settings: Any, mailers_style: Any
    ) -> None:
        settings.MAILER_QUOTAS = {"smtp": {"per_second": 5}, "default": {"per_day": 1}}
        warning = the_one("mailer.W055")
        assert "'default'" in warning.msg  # the DbBackend alias: it queues, it does not deliver

    def test_no_quotas_is_fine(self) -> None:
        assert reported("mailer.W055") == []

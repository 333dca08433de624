"""``mailer.conf``: every MAILER_* setting, read when used, validated, and documented."""

from __future__ import annotations

import ast
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from mailer.conf import MailerSettings, Quota, Setting, default_lock_directory
from mailer.conf import settings as mailer_settings
from mailer.exceptions import MailerConfigurationError, MailerError
from mailer.priorities import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_MEDIUM

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE = ROOT / "src" / "mailer"
ALL = MailerSettings.all_settings()
BY_NAME = {setting.name: setting for setting in ALL}


def attribute(setting: Setting[Any]) -> str:
    """The MailerSettings attribute that reads ``setting``."""
    return next(key for key, value in vars(MailerSettings).items() if value is setting)


def readme_settings_table() -> dict[str, str]:
    """``{setting: default}`` from README.md's settings table (the default's first literal)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) >= 3 and cells[0].startswith("`MAILER_"):
            literal = re.match(r"`([^`]*)`", cells[1])
            assert literal, f"README: the default of {cells[0]} is not a `literal`: {cells[1]!r}"
            table[cells[0].strip("`")] = literal.group(1)
    return table


class TestReadLazily:
    def test_a_changed_setting_is_seen_at_once(self, settings: Any) -> None:
        settings.MAILER_EMAIL_THROTTLE = 1
        assert settings_value("MAILER_EMAIL_THROTTLE") == 1.0
        settings.MAILER_EMAIL_THROTTLE = 2.5
        assert settings_value("MAILER_EMAIL_THROTTLE") == 2.5

    @pytest.mark.parametrize("setting", ALL, ids=lambda s: s.name)
    def test_an_unset_setting_has_its_default(self, settings: Any, setting: Setting[Any]) -> None:
        from django.conf import settings as django_settings

        if hasattr(django_settings, setting.name):
            delattr(settings, setting.name)
        assert not setting.is_set()
        assert getattr(mailer_settings, attribute(setting)) == setting.validate(
            setting.name, setting.default
        )


def settings_value(name: str) -> Any:
    """What the mailer reads for setting ``name``."""
    return getattr(mailer_settings, attribute(BY_NAME[name]))


class TestValidation:
    @pytest.mark.parametrize("setting", ALL, ids=lambda s: s.name)
    def test_a_wrong_type_raises_an_error_naming_the_setting(
        self, settings: Any, setting: Setting[Any]
    ) -> None:
        setattr(settings, setting.name, object())
        with pytest.raises(MailerConfigurationError, match=setting.name):
            settings_value(setting.name)

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("MAILER_EMAIL_MAX_BATCH", 0),
            ("MAILER_EMAIL_MAX_BATCH", "10"),
            ("MAILER_EMAIL_MAX_BATCH", True),
            ("MAILER_EMAIL_MAX_BATCH", 1.5),
            ("MAILER_EMAIL_MAX_RETRIES", -1),
            ("MAILER_EMAIL_THROTTLE", -0.1),
            ("MAILER_EMAIL_THROTTLE", "1"),
            ("MAILER_PAUSE_SEND", "yes"),
            ("MAILER_PAUSE_SEND", 1),
            ("MAILER_PAUSE_SEND", None),
            ("MAILER_MESSAGE_CLASSES", "anymail.message.AnymailMessage"),
            ("MAILER_MESSAGE_CLASSES", [1]),
            ("MAILER_ERROR_CLASSIFIERS", None),
            ("MAILER_DEFAULT_PRIORITY", "urgent"),
            ("MAILER_DEFAULT_PRIORITY", 0),
            ("MAILER_DEFAULT_PRIORITY", None),
            ("MAILER_LOCK_PATH", 42),
            ("MAILER_EMAIL_BACKEND", "smtp"),
            ("MAILER_EMAIL_BACKEND", None),
            ("MAILER_ERROR_HANDLER", ""),
            ("MAILER_POLL_INTERVAL", 0),
            ("MAILER_LEASE_SECONDS", 0.5),
            ("MAILER_CONCURRENCY", 0),
            ("MAILER_WORKERS", 2.0),
            ("MAILER_MESSAGES_BATCH_SIZE", 0),
            ("MAILER_MAX_MESSAGE_SIZE", -1),
            ("MAILER_IDEMPOTENCY_WINDOW", 0),
            ("MAILER_IDEMPOTENCY_WINDOW", None),
            ("MAILER_IDEMPOTENCY_WINDOW", "7 days"),
            ("MAILER_SUPPRESS_EVENTS", "bounced"),
            ("MAILER_SUPPRESS_EVENTS", ["bounced", "deferred"]),
            ("MAILER_SUPPRESS_EVENTS", ["opened"]),
            ("MAILER_SUPPRESS_SMTP_CODES", "550"),
            ("MAILER_SUPPRESS_SMTP_CODES", [450]),
            ("MAILER_SUPPRESS_SMTP_CODES", ["550 4.2.2"]),
            ("MAILER_SUPPRESS_SMTP_CODES", ["5.1.1"]),
            ("MAILER_SUPPRESS_SMTP_CODES", ["550 5.1.1 user unknown"]),
            ("MAILER_SUPPRESS_SMTP_CODES", [True]),
            ("MAILER_QUOTAS", [("ses", {"per_day": 10})]),
            ("MAILER_QUOTAS", {"ses": {}}),
            ("MAILER_QUOTAS", {"ses": {"per_hour": 10}}),
            ("MAILER_QUOTAS", {"ses": {"per_day": 0}}),
            ("MAILER_QUOTAS", {"ses": {"per_day": 1.5}}),
            ("MAILER_QUOTAS", {"ses": {"per_second": -1}}),
            ("MAILER_QUOTAS", {"": {"per_day": 10}}),
        ],
    )
    def test_a_bad_value_is_refused(self, settings: Any, name: str, value: Any) -> None:
        setattr(settings, name, value)
        with pytest.raises(MailerConfigurationError, match=name):
            settings_value(name)

    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("MAILER_EMAIL_MAX_BATCH", None, None),
            ("MAILER_EMAIL_MAX_BATCH", 50, 50),
            ("MAILER_EMAIL_THROTTLE", 0.5, 0.5),
            ("MAILER_DEFAULT_PRIORITY", "high", PRIORITY_HIGH),
            ("MAILER_DEFAULT_PRIORITY", PRIORITY_LOW, PRIORITY_LOW),
            ("MAILER_DEFAULT_PRIORITY", "Medium", PRIORITY_MEDIUM),
            ("MAILER_LOCK_PATH", Path("/var/lock/mailer"), "/var/lock/mailer"),
            ("MAILER_MESSAGE_CLASSES", ["a.B", "c.D"], ("a.B", "c.D")),
            ("MAILER_MAX_MESSAGE_SIZE", None, None),
            ("MAILER_MAX_MESSAGE_AGE", None, None),
            ("MAILER_RATE_LIMIT", 20, 20.0),
            ("MAILER_IDEMPOTENCY_WINDOW", 3600, 3600.0),
            ("MAILER_SUPPRESS_EVENTS", ["complained", "rejected"], ("complained", "rejected")),
            ("MAILER_SUPPRESS_EVENTS", [], ()),
            (
                "MAILER_SUPPRESS_SMTP_CODES",
                [550, "551", " 550  5.1.1 "],
                ((550, None), (551, None), (550, "5.1.1")),
            ),
            (
                "MAILER_QUOTAS",
                {"ses": {"per_second": 14, "per_day": 50000}, "smtp": {"per_second": 0.5}},
                {"ses": Quota(14.0, 50000), "smtp": Quota(0.5, None)},
            ),
        ],
    )
    def test_a_good_value_is_typed(
        self, settings: Any, name: str, value: Any, expected: Any
    ) -> None:
        setattr(settings, name, value)
        assert settings_value(name) == expected

    def test_the_error_is_improperly_configured_and_a_mailer_error(self) -> None:
        assert issubclass(MailerConfigurationError, ImproperlyConfigured)
        assert issubclass(MailerConfigurationError, MailerError)


class TestLockFile:
    def test_is_the_lock_path_plus_dot_lock(self, settings: Any) -> None:
        settings.MAILER_LOCK_PATH = "/var/lock/mailer"
        assert mailer_settings.lock_file == "/var/lock/mailer.lock"

    def test_defaults_to_a_file_in_the_users_own_temp_dir_for_this_database(
        self, settings: Any
    ) -> None:
        settings.MAILER_LOCK_PATH = None
        lock = mailer_settings.lock_file
        directory = os.path.dirname(lock)
        assert directory == default_lock_directory()
        assert os.path.dirname(directory) == tempfile.gettempdir()
        assert os.path.basename(directory) == f"django-mailer-{os.geteuid()}"
        assert lock.endswith(".lock") and lock == mailer_settings.lock_file


class TestDocumented:
    """README.md's settings table and MailerSettings say the same thing."""

    def test_every_setting_is_in_the_readme_and_nothing_else_is(self) -> None:
        documented = readme_settings_table()
        assert sorted(documented) == sorted(BY_NAME), (
            f"only in the code: {sorted(set(BY_NAME) - set(documented))}; "
            f"only in README.md: {sorted(set(documented) - set(BY_NAME))}"
        )

    @pytest.mark.parametrize("setting", ALL, ids=lambda s: s.name)
    def test_the_readme_gives_the_real_default(self, setting: Setting[Any]) -> None:
        documented = readme_settings_table().get(setting.name)
        assert documented is not None, f"{setting.name} is missing from README.md"
        value = ast.literal_eval(documented)
        assert setting.validate(setting.name, value) == setting.validate(
            setting.name, setting.default
        ), f"README.md says {setting.name} defaults to {documented}, the code {setting.default!r}"

    @pytest.mark.parametrize("setting", ALL, ids=lambda s: s.name)
    def test_every_setting_says_what_it_does(self, setting: Setting[Any]) -> None:
        assert setting.doc.strip().endswith("."), setting.name


class TestOnlyConfReadsSettings:
    """No module but mailer.conf reads a MAILER_* setting from django.conf.settings."""

    def test_no_other_module_reads_mailer_settings(self) -> None:
        offenders = []
        for path in sorted(PACKAGE.rglob("*.py")):
            if path == PACKAGE / "conf.py":
                continue
            source = path.read_text(encoding="utf-8")
            for line in mailer_setting_reads(source):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
        assert not offenders, "read MAILER_* settings through mailer.conf instead: " + ", ".join(
            offenders
        )

    @pytest.mark.parametrize(
        "source",
        [
            "from django.conf import settings\nx = settings.MAILER_PAUSE_SEND\n",
            "import django.conf\nx = django.conf.settings.MAILER_LOCK_PATH\n",
            "from django.conf import settings\nx = getattr(settings, 'MAILER_LOCK_PATH', None)\n",
            "from django.conf import settings as s\nif hasattr(s, 'MAILER_WORKERS'): pass\n",
            "from django.conf import settings\nx = settings.__dict__['MAILER_WORKERS']\n",
        ],
    )
    def test_the_search_finds_a_read(self, source: str) -> None:
        assert mailer_setting_reads(source) == [2]

    def test_the_search_ignores_mentions_in_text(self) -> None:
        source = '"""Set MAILER_PAUSE_SEND to stop."""\nlog(f"MAILER_EMAIL_MAX_BATCH ({n})")\n'
        assert mailer_setting_reads(source) == []


def mailer_setting_reads(source: str) -> list[int]:
    """Line numbers where ``source`` reads a MAILER_* name as an attribute or by key."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("MAILER_"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and _name(node.func) in {"getattr", "hasattr"}:
            if len(node.args) >= 2 and _is_mailer_name(node.args[1]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_mailer_name(node.slice):
            lines.append(node.lineno)
    return sorted(set(lines))


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else ""


def _is_mailer_name(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("MAILER_")
    )

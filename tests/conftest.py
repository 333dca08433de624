from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings as django_settings
from django.test import Client

from .admin_pages import VIEW, client_for, user_with
from .smtp import SMTPServer


def pytest_report_header(config: pytest.Config) -> list[str]:
    import django

    database = os.environ.get("MAILER_TEST_DB", "sqlite")
    return [f"mailer: Django {django.get_version()}, {database}, style {django_settings.STYLE}"]


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Kill whatever a test started and left running (a failing test's worker, say)."""
    yield
    from .processes import kill_leftovers

    kill_leftovers()


@pytest.fixture(autouse=True)
def queue_config(settings: Any) -> None:
    """Undo Django's test set-up, which swaps every email backend for locmem."""
    if django_settings.STYLE == "mailers":
        settings.MAILERS = django_settings.TEST_MAILERS
    else:
        settings.EMAIL_BACKEND = "mailer.backend.DbBackend"


@pytest.fixture
def queueing_backend(queue_config: None) -> Any:
    """The DbBackend that Django's mail functions send through in this run's style."""
    if hasattr(django_settings, "MAILERS"):
        # DJANGO_COMPAT(<6.1): MAILERS aliases are new in Django 6.1.
        from django.core.mail import mailers

        return mailers["default"]
    from django.core.mail import get_connection

    return get_connection()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer().start()
    yield server
    server.stop()


def point_at(settings: Any, port: int, host: str = "127.0.0.1", **options: Any) -> None:
    """Aim the delivery backend of either configuration style at host:port."""
    if hasattr(django_settings, "MAILERS"):
        mailers = {alias: {**config} for alias, config in django_settings.MAILERS.items()}
        mailers["smtp"] = {
            **mailers["smtp"],
            "OPTIONS": {
                **mailers["smtp"].get("OPTIONS", {}),
                "host": host,
                "port": port,
                **options,
            },
        }
        settings.MAILERS = mailers
    else:
        settings.EMAIL_HOST = host
        settings.EMAIL_PORT = port
        for name, value in options.items():
            setattr(settings, f"EMAIL_{name.upper()}", value)


@pytest.fixture
def smtp(smtp_server: SMTPServer, settings: Any) -> Iterator[SMTPServer]:
    """The test SMTP server, emptied, with delivery pointed at it."""
    smtp_server.reset()
    point_at(settings, smtp_server.port)
    yield smtp_server
    smtp_server.reset()


@pytest.fixture
def legacy_style(settings: Any) -> Iterator[None]:
    """EMAIL_BACKEND + MAILER_EMAIL_BACKEND, whatever the default style of this run."""
    import warnings

    with warnings.catch_warnings():
        # DJANGO_COMPAT(<6.1): on 6.1 the legacy settings are deprecated: setting, reading
        # and restoring them warns. That is the point here.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        if hasattr(django_settings, "MAILERS"):
            del settings.MAILERS
        settings.EMAIL_BACKEND = "mailer.backend.DbBackend"
        settings.MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = 25
        settings.EMAIL_TIMEOUT = 10
        yield
        # Undo every change made through the settings fixture (the test's too) while the
        # warnings are still silenced; the fixture's own teardown then has nothing left.
        settings._finalize()


@pytest.fixture
def default_lock_dir(settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default send_mail lock (no MAILER_LOCK_PATH), under a temp directory of the test's
    own: the path of its private directory, not made yet."""
    import tempfile
    from pathlib import Path

    from mailer.conf import default_lock_directory

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    settings.MAILER_LOCK_PATH = None
    return Path(default_lock_directory())


@pytest.fixture(scope="session")
def second_smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailers_style(settings: Any) -> dict[str, dict[str, Any]]:
    """Django 6.1's MAILERS style, whatever the default style of this run; a copy to extend.

    Tests that use it are skipped on Django versions without MAILERS.
    """
    from mailer.compat import HAS_MAILERS

    if not HAS_MAILERS:  # DJANGO_COMPAT(<6.1)
        pytest.skip("MAILERS needs Django 6.1")
    if not hasattr(django_settings, "MAILERS"):
        for name in ("EMAIL_BACKEND", "MAILER_EMAIL_BACKEND"):
            if hasattr(django_settings, name):
                delattr(settings, name)
    mailers = {alias: {**config} for alias, config in django_settings.TEST_MAILERS.items()}
    settings.MAILERS = mailers
    return mailers


# The admin's users (see admin_pages.py).


@pytest.fixture
def viewer() -> Client:
    """May look at the queue, but not at bodies, and may not send."""
    return client_for(user_with("viewer", *VIEW))


@pytest.fixture
def reader() -> Client:
    return client_for(user_with("reader", *VIEW, "view_message_body"))


@pytest.fixture
def operator() -> Client:
    return client_for(user_with("operator", *VIEW, "send_message"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out tests about another database (or about none, or the same on every
    one, but in the SQLite run; or long ones about the database alone, but under
    Django 5.2), a Django without MAILERS, Django Tasks' database
    backend where it is not installed, or another user's files and processes when
    not run as root.

    They are deselected (and counted so), not skipped; and legacy-style tests may
    meet Django 6.1's deprecation warnings for that style.
    """
    from mailer.compat import HAS_MAILERS, MODERN_EMAIL

    database = os.environ.get("MAILER_TEST_DB", "sqlite")
    tasks_db = "django_tasks_db" in django_settings.INSTALLED_APPS
    if not tasks_db and os.environ.get("CI") == "true":
        raise pytest.UsageError("CI runs the Django Tasks tests: install django-tasks-db")
    elsewhere = [
        item
        for item in items
        if (item.get_closest_marker("postgres_only") and database != "postgres")
        or (item.get_closest_marker("not_postgres") and database == "postgres")
        or (item.get_closest_marker("mariadb_only") and database != "mariadb")
        or (item.get_closest_marker("server_database") and database == "sqlite")
        or (item.get_closest_marker("oldest_django") and django.VERSION[:2] != (5, 2))
        or (item.get_closest_marker("sqlite_only") and database != "sqlite")
        or (item.get_closest_marker("no_database") and database != "sqlite")
        or (item.get_closest_marker("any_database") and database != "sqlite")
        or (item.get_closest_marker("before_mailers") and HAS_MAILERS)
        or (item.get_closest_marker("modern_email") and not MODERN_EMAIL)
        or ("mailers_style" in getattr(item, "fixturenames", ()) and not HAS_MAILERS)
        or (item.get_closest_marker("tasks") and not tasks_db)
        or (item.get_closest_marker("as_root") and os.geteuid() != 0)
    ]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if item not in elsewhere]
    for item in items:
        if "legacy_style" in getattr(item, "fixturenames", ()):
            # DJANGO_COMPAT(<6.1): on 6.1 the EMAIL_* settings are deprecated; that is the point.
            item.add_marker(pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"))

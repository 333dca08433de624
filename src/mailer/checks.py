"""System checks: a misconfiguration is reported at start-up, with a stable id and a hint.

==========  ==============================================================
mailer.E001 Queued mail would be delivered through the queue itself.
mailer.E002 A ``MAILER_*`` setting has the wrong type or value.
mailer.E003 A delivery backend cannot be imported.
mailer.E004 A DbBackend entry of ``MAILERS`` has bad ``OPTIONS``.
mailer.E005 ``MAILER_ERROR_HANDLER`` or a ``MAILER_ERROR_CLASSIFIERS`` entry
            cannot be imported.
mailer.E006 ``MAILER_TASKS_ENQUEUE_ON_COMMIT`` is on, but the drain task cannot
            be defined (no Tasks framework, or a Tasks backend that refuses it).
mailer.W001 Several workers are configured on SQLite.
mailer.W002 The ``send_mail`` lock file cannot be created or written.
mailer.W003 ``MAILER_EMAIL_BACKEND`` is set, but ``MAILERS`` decides.
mailer.W004 ``MAILERS`` is set, but this Django version ignores it.
mailer.W005 ``MAILER_TASKS_ENQUEUE_ON_COMMIT`` is on, but the Tasks backend
            cannot run a task later.
mailer.W030 The ``send_mail`` lock file or its directory is not safe: another
            user's, writable by others, or a symbolic link.
mailer.W040 ``MAILER_IDEMPOTENCY_WINDOW`` is shorter than
            ``MAILER_MAX_MESSAGE_AGE``.
mailer.W045 A django-anymail delivery backend cannot be made as configured.
mailer.W050 mailer's migrations are not all applied to a database (a
            ``database`` check: ``manage.py check --database default``).
mailer.W055 ``MAILER_QUOTAS`` names an alias that delivers no queued mail.
==========  ==============================================================

README.md lists the same table; ``tests/test_checks.py`` keeps them in step.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, router
from django.utils.module_loading import import_string

from mailer.conf import (
    DEFAULT_DELIVERY_BACKEND,
    MailerSettings,
    mailers_configured,
    mailers_defined,
    mailers_setting,
    settings,
)
from mailer.exceptions import MailerConfigurationError
from mailer.priorities import parse_priority
from mailer.queue.aliases import is_queueing_backend
from mailer.queue.message import Message
from mailer.queue.schema import describe, unapplied_migrations
from mailer.runner import lock as file_lock

TAG = "mailer"


def _valid(setting: Any) -> bool:
    """Does ``setting`` hold a valid value? (If not, mailer.E002 says so.)"""
    try:
        setting.validate(setting.name, setting.raw())
    except MailerConfigurationError:
        return False
    return True


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E002: a MAILER_* setting has the wrong type or value."""
    errors: list[CheckMessage] = []
    for setting in MailerSettings.all_settings():
        try:
            setting.validate(setting.name, setting.raw())
        except MailerConfigurationError as error:
            errors.append(
                Error(
                    str(error),
                    hint=f"Fix {setting.name} or remove it to use the default "
                    f"({setting.default!r}). README.md's settings table lists what each takes.",
                    id="mailer.E002",
                    obj=setting.name,
                )
            )
    return errors


@register(TAG)
def check_delivery_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001, E003, E004, W003, W004: the backend that really delivers queued mail."""
    # DJANGO_COMPAT(<6.1): before Django 6.1 a MAILERS setting means nothing.
    if mailers_defined() and not mailers_configured():
        return [
            Warning(
                "MAILERS is set, but this version of Django does not support it: queued "
                "mail is delivered through MAILER_EMAIL_BACKEND.",
                hint="Use EMAIL_BACKEND = 'mailer.backend.DbBackend' and MAILER_EMAIL_BACKEND "
                "until the project runs on Django 6.1 or later.",
                id="mailer.W004",
            ),
            *_check_legacy_backend(),
        ]
    if mailers_configured():
        return _check_mailers()
    return _check_legacy_backend()


def _check_legacy_backend() -> list[CheckMessage]:

    if not _valid(MailerSettings.EMAIL_BACKEND):
        return []  # mailer.E002
    path = settings.EMAIL_BACKEND
    if is_queueing_backend(path):
        return [
            Error(
                f"MAILER_EMAIL_BACKEND is {path!r}, the backend that queues mail: queued mail "
                "would be queued again forever.",
                hint="Set EMAIL_BACKEND = 'mailer.backend.DbBackend' and MAILER_EMAIL_BACKEND to "
                f"the backend that really sends mail, such as {DEFAULT_DELIVERY_BACKEND!r}.",
                id="mailer.E001",
                obj="MAILER_EMAIL_BACKEND",
            )
        ]
    problem = _import_problem(path)
    if problem:
        return [
            Error(
                f"MAILER_EMAIL_BACKEND {path!r} cannot be imported: {problem}",
                hint="Set MAILER_EMAIL_BACKEND to the dotted path of an email backend class "
                "that is installed.",
                id="mailer.E003",
                obj="MAILER_EMAIL_BACKEND",
            )
        ]
    return []


def _check_mailers() -> list[CheckMessage]:

    messages: list[CheckMessage] = []
    if MailerSettings.EMAIL_BACKEND.is_set():
        messages.append(
            Warning(
                "MAILER_EMAIL_BACKEND is set, but with MAILERS each DbBackend entry's "
                "OPTIONS['mailer'] names the alias that delivers; MAILER_EMAIL_BACKEND is "
                "not used.",
                hint="Remove MAILER_EMAIL_BACKEND, and configure the delivery backend as a "
                "MAILERS alias.",
                id="mailer.W003",
                obj="MAILER_EMAIL_BACKEND",
            )
        )
    aliases = mailers_setting()
    if not isinstance(aliases, dict):
        return messages  # Django's own checks and MailersHandler report this
    for alias, config in aliases.items():
        config = config if isinstance(config, dict) else {}
        path = config.get("BACKEND", DEFAULT_DELIVERY_BACKEND)
        where = f"MAILERS[{alias!r}]"
        if is_queueing_backend(path):
            messages.extend(_check_queueing_alias(alias, config, aliases))
            continue
        problem = _import_problem(path)
        if problem:
            messages.append(
                Error(
                    f"{where}['BACKEND'] {path!r} cannot be imported: {problem}",
                    hint="Set BACKEND to the dotted path of an email backend class that is "
                    "installed.",
                    id="mailer.E003",
                    obj=where,
                )
            )
    return messages


def _check_queueing_alias(
    alias: str, config: dict[str, Any], aliases: dict[str, Any]
) -> list[CheckMessage]:
    """A MAILERS entry whose BACKEND is DbBackend: its OPTIONS must name a real sender."""

    where = f"MAILERS[{alias!r}]"
    options = config.get("OPTIONS") or {}
    messages: list[CheckMessage] = []
    if "priority" in options:
        try:
            parse_priority(options["priority"])
        except ValueError as error:
            messages.append(
                Error(
                    f"{where}['OPTIONS']['priority']: {error}",
                    hint="Use 'high', 'medium', 'low' or 'deferred', or a PRIORITY_* constant.",
                    id="mailer.E004",
                    obj=where,
                )
            )
    target = options.get("mailer")
    others = [name for name, other in aliases.items() if name != alias]
    if not target or not isinstance(target, str):
        messages.append(
            Error(
                f"{where} uses mailer.backend.DbBackend, but its OPTIONS do not name the "
                "alias that delivers the queued mail.",
                hint=f"Add 'OPTIONS': {{'mailer': ALIAS}} to {where}, where ALIAS is the "
                f"MAILERS entry that really sends mail (one of: {', '.join(others) or 'none'}).",
                id="mailer.E004",
                obj=where,
            )
        )
    elif target not in aliases:
        messages.append(
            Error(
                f"{where}['OPTIONS']['mailer'] is {target!r}, but MAILERS has no such alias.",
                hint=f"Name one of the MAILERS aliases ({', '.join(others) or 'none'}), or add "
                f"a MAILERS entry {target!r} for the backend that really sends mail.",
                id="mailer.E004",
                obj=where,
            )
        )
    elif is_queueing_backend((aliases[target] or {}).get("BACKEND", DEFAULT_DELIVERY_BACKEND)):
        messages.append(
            Error(
                f"{where}['OPTIONS']['mailer'] is {target!r}, whose BACKEND is "
                "mailer.backend.DbBackend too: queued mail would be queued again forever.",
                hint=f"Point {where}['OPTIONS']['mailer'] at an alias whose BACKEND really "
                "sends mail, such as django.core.mail.backends.smtp.EmailBackend.",
                id="mailer.E001",
                obj=where,
            )
        )
    return messages


@register(TAG)
def check_error_handling(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E005: the error handler or a classifier cannot be imported."""
    messages: list[CheckMessage] = []
    paths: list[tuple[str, str]] = []
    if _valid(MailerSettings.ERROR_HANDLER):
        paths.append(("MAILER_ERROR_HANDLER", settings.ERROR_HANDLER))
    if _valid(MailerSettings.ERROR_CLASSIFIERS):
        paths.extend(("MAILER_ERROR_CLASSIFIERS", path) for path in settings.ERROR_CLASSIFIERS)
    for name, path in paths:
        problem = _import_problem(path)
        if problem is None and not callable(import_string(path)):
            problem = "it is not callable"
        if problem:
            messages.append(
                Error(
                    f"{name}: {path!r} cannot be used: {problem}",
                    hint="Give the dotted path of a function that is installed "
                    "(see README.md's settings table for its signature).",
                    id="mailer.E005",
                    obj=name,
                )
            )
    return messages


@register(TAG)
def check_workers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W001: several workers (processes or connections) on SQLite."""
    from django.db import connections, router

    if not (_valid(MailerSettings.WORKERS) and _valid(MailerSettings.CONCURRENCY)):
        return []  # mailer.E002
    workers, concurrency = settings.WORKERS, settings.CONCURRENCY
    if workers == 1 and concurrency == 1:
        return []
    alias = router.db_for_write(Message)
    if connections[alias].vendor != "sqlite":
        return []
    return [
        Warning(
            f"MAILER_WORKERS is {workers} and MAILER_CONCURRENCY is {concurrency}, but the "
            f"queue is in SQLite (database {alias!r}), which lets one writer in at a time: "
            "workers would mostly wait for each other, and time out under load.",
            hint="Run one worker with MAILER_CONCURRENCY = 1 on SQLite, or keep the queue in "
            "PostgreSQL or MariaDB/MySQL.",
            id="mailer.W001",
        )
    ]


@register(TAG)
def check_lock_path(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W030, mailer.W002: the send_mail lock is unsafe, or cannot be created or written.

    Warnings, not errors: they are about this host's files, and other commands (migrate,
    runserver) must not stop for them; send_mail itself refuses an unsafe lock.
    """
    if not (_valid(MailerSettings.USE_FILE_LOCK) and _valid(MailerSettings.LOCK_PATH)):
        return []  # mailer.E002
    if not settings.USE_FILE_LOCK:
        return []
    default = settings.LOCK_PATH is None
    lock = settings.lock_file
    problem = file_lock.lock_problem(lock, default=default)
    if problem:
        return [
            Warning(
                f"The send_mail lock {lock!r} is not safe to use: {problem}. send_mail and "
                "send_all() refuse to run.",
                hint="Another user could replace or hold this lock. Point MAILER_LOCK_PATH "
                "into a directory that belongs to the user running send_mail and that no one "
                "else can write (mode 0700 or 0755), or leave it unset to use a private "
                "directory under the temp directory.",
                id="mailer.W030",
                obj="MAILER_LOCK_PATH",
            )
        ]
    unusable = _lock_unusable(lock, default)
    if unusable:
        return [
            Warning(
                f"The send_mail lock file {lock!r} cannot be used: {unusable}. send_mail and "
                "send_all() will fail to take the lock.",
                hint="Set MAILER_LOCK_PATH to a path (without '.lock') in a directory the "
                "workers can write to, or set MAILER_USE_FILE_LOCK = False: the lock only "
                "serialises send_mail runs on one host, and on PostgreSQL and MariaDB claims "
                "keep them apart.",
                id="mailer.W002",
                obj="MAILER_LOCK_PATH",
            )
        ]
    return []


def _lock_unusable(lock: str, default: bool) -> str | None:
    """Why the lock file cannot be created or written by this process, or None."""
    directory = os.path.dirname(lock)
    if default and not os.path.isdir(directory):
        directory = os.path.dirname(directory)  # the private directory is made on first use
        if not os.access(directory, os.W_OK | os.X_OK):
            return f"this process may not create its directory in {directory!r}"
        return None
    if not os.path.isdir(directory):
        return f"its directory {directory!r} does not exist"
    if os.path.exists(lock) and (os.path.isdir(lock) or not os.access(lock, os.R_OK | os.W_OK)):
        return "it exists and is not a file this process may read and write"
    if not os.path.exists(lock) and not os.access(directory, os.W_OK | os.X_OK):
        return f"this process may not create files in {directory!r}"
    return None


@register(TAG)
def check_tasks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E006, mailer.W005: the drain task that MAILER_TASKS_ENQUEUE_ON_COMMIT enqueues."""
    if not _valid(MailerSettings.TASKS_ENQUEUE_ON_COMMIT) or not settings.TASKS_ENQUEUE_ON_COMMIT:
        return []
    try:
        from mailer.tasks import send_queued_mail  # optional: the Tasks framework may be missing
    except Exception as error:  # no framework, or a backend that refuses the task
        return [
            Error(
                "MAILER_TASKS_ENQUEUE_ON_COMMIT is True, but the task that delivers queued mail "
                f"cannot be defined: {type(error).__name__}: {error}",
                hint="Django 5.2 needs the django-tasks backport (pip install 'mailer[tasks]'); "
                "the default TASKS backend must accept a task on its 'default' queue.",
                id="mailer.E006",
                obj="MAILER_TASKS_ENQUEUE_ON_COMMIT",
            )
        ]
    backend = send_queued_mail.get_backend()
    if backend.supports_defer:
        return []
    return [
        Warning(
            f"MAILER_TASKS_ENQUEUE_ON_COMMIT is True, but the Tasks backend "
            f"{type(backend).__name__} cannot run a task later: scheduled and deferred mail "
            "waits until more mail is queued.",
            hint="Use a Tasks backend that runs tasks in the background and supports run_after "
            "(such as django_tasks_db.DatabaseBackend), or also run send_mail from cron.",
            id="mailer.W005",
            obj="MAILER_TASKS_ENQUEUE_ON_COMMIT",
        )
    ]


@register(TAG)
def check_idempotency_window(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W040: a key may be free again while its first message is still being retried."""
    if not (_valid(MailerSettings.IDEMPOTENCY_WINDOW) and _valid(MailerSettings.MAX_MESSAGE_AGE)):
        return []  # mailer.E002
    window, age = settings.IDEMPOTENCY_WINDOW, settings.MAX_MESSAGE_AGE
    if age is None or window >= age:
        return []
    return [
        Warning(
            f"MAILER_IDEMPOTENCY_WINDOW ({window:g} s) is shorter than MAILER_MAX_MESSAGE_AGE "
            f"({age:g} s): an idempotency key may be free again while its message is still "
            "deferred and retried, and a repeated call would then queue a second copy.",
            hint="Make MAILER_IDEMPOTENCY_WINDOW at least as long as MAILER_MAX_MESSAGE_AGE.",
            id="mailer.W040",
            obj="MAILER_IDEMPOTENCY_WINDOW",
        )
    ]


@register(TAG)
def check_providers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W045: a django-anymail delivery backend that cannot be made as configured
    (a missing API key, an unknown option...): every delivery run would stop at once."""
    messages: list[CheckMessage] = []
    for where, path, make in _delivery_backends():
        if not isinstance(path, str) or not path.startswith("anymail."):
            continue
        try:
            make()
        except ImproperlyConfigured as error:  # anymail's configuration errors are these
            messages.append(
                Warning(
                    f"{where} {path!r} cannot be made: {error}",
                    hint="Give the setting or option anymail names (MAILERS OPTIONS, or the "
                    "ANYMAIL setting): until then queued mail waits, and each delivery run "
                    "stops at once.",
                    id="mailer.W045",
                    obj=where,
                )
            )
        except Exception:  # cannot be imported: mailer.E003
            continue
    return messages


def _delivery_backends() -> list[tuple[str, Any, Any]]:
    """(where it is configured, dotted path, a function making it) of each backend that
    delivers queued mail."""
    if not mailers_configured():
        path = settings.EMAIL_BACKEND if _valid(MailerSettings.EMAIL_BACKEND) else None
        return [("MAILER_EMAIL_BACKEND", path, lambda: import_string(str(path))())]
    aliases = mailers_setting()
    if not isinstance(aliases, dict):
        return []
    from django.core.mail import mailers  # DJANGO_COMPAT(<6.1): only 6.1 has it

    return [
        (f"MAILERS[{alias!r}]", config.get("BACKEND"), lambda alias=alias: mailers[alias])
        for alias, config in aliases.items()
        if isinstance(config, dict) and not is_queueing_backend(config.get("BACKEND"))
    ]


@register(Tags.database)
def check_migrations(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """mailer.W050: the queue's tables are missing or older than the code that uses them.

    A database check: Django runs it for the databases it is given (``manage.py
    check --database default``, ``migrate``, the test runner), never at import.
    A database that cannot be reached is left to the errors that will follow.
    """
    found: list[CheckMessage] = []
    for alias in databases or ():
        if not router.allow_migrate_model(alias, Message):
            continue
        try:
            unapplied = unapplied_migrations(alias)
        except DatabaseError:
            continue
        if unapplied:
            option = "" if alias == "default" else f" --database {alias}"
            found.append(
                Warning(
                    f"Database {alias!r}: {describe(unapplied)}; queueing or sending mail "
                    "fails until they are.",
                    hint=f"Run `python manage.py migrate{option}` (migrate itself shows this "
                    "once, just before it applies them).",
                    id="mailer.W050",
                    obj="mailer",
                )
            )
    return found


@register(TAG)
def check_quotas(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W055: a MAILER_QUOTAS key that no queued mail is delivered through."""
    if not _valid(MailerSettings.QUOTAS):
        return []  # mailer.E002
    if mailers_configured():
        known = mailers_setting()
        aliases = {a for a, c in known.items() if not is_queueing_backend(c.get("BACKEND"))}
        hint = "Name an alias of MAILERS that delivers mail (not a DbBackend alias)."
    else:
        aliases = {"default"}
        hint = 'Without MAILERS, the one key is "default": MAILER_EMAIL_BACKEND.'
    return [
        Warning(
            f"MAILER_QUOTAS has a quota for {alias!r}, which delivers no queued mail: "
            "it limits nothing.",
            hint=hint,
            id="mailer.W055",
            obj="MAILER_QUOTAS",
        )
        for alias in sorted(settings.QUOTAS)
        if alias not in aliases
    ]


def _import_problem(path: Any) -> str | None:
    """Why ``path`` cannot be imported (None if it can)."""
    if not isinstance(path, str):
        return f"{path!r} is not a dotted path"
    try:
        import_string(path)
    except Exception as error:  # any import-time failure makes the path unusable
        return f"{type(error).__name__}: {error}"
    return None


__all__ = [
    "check_delivery_backend",
    "check_error_handling",
    "check_idempotency_window",
    "check_lock_path",
    "check_migrations",
    "check_providers",
    "check_quotas",
    "check_settings",
    "check_tasks",
    "check_workers",
]

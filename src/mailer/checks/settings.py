"""Checks of the ``MAILER_*`` settings: values, error handling, workers, the lock, Tasks, keys."""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections, router
from django.utils.module_loading import import_string

from mailer.checks.common import TAG, import_problem, valid
from mailer.conf import (
    MailerSettings,
    settings,
)
from mailer.exceptions import MailerConfigurationError
from mailer.queue.message import Message
from mailer.runner import lock as file_lock


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
def check_error_handling(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E005: the error handler or a classifier cannot be imported."""
    paths: list[tuple[str, str]] = []
    if valid(MailerSettings.ERROR_HANDLER):
        paths.append(("MAILER_ERROR_HANDLER", settings.ERROR_HANDLER))
    if valid(MailerSettings.ERROR_CLASSIFIERS):
        paths.extend(("MAILER_ERROR_CLASSIFIERS", path) for path in settings.ERROR_CLASSIFIERS)
    unusable = [(name, path, _call_problem(path)) for name, path in paths]
    return [
        Error(
            f"{name}: {path!r} cannot be used: {problem}",
            hint="Give the dotted path of a function that is installed "
            "(see README.md's settings table for its signature).",
            id="mailer.E005",
            obj=name,
        )
        for name, path, problem in unusable
        if problem
    ]


def _call_problem(path: str) -> str | None:
    """Why the function at dotted ``path`` cannot be called, or None if it can."""
    problem = import_problem(path)
    if problem is None and not callable(import_string(path)):
        return "it is not callable"
    return problem


@register(TAG)
def check_workers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W001: several workers (processes or connections) on SQLite."""
    if not (valid(MailerSettings.WORKERS) and valid(MailerSettings.CONCURRENCY)):
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
    if not (valid(MailerSettings.USE_FILE_LOCK) and valid(MailerSettings.LOCK_PATH)):
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
    if not valid(MailerSettings.TASKS_ENQUEUE_ON_COMMIT) or not settings.TASKS_ENQUEUE_ON_COMMIT:
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
    if not (valid(MailerSettings.IDEMPOTENCY_WINDOW) and valid(MailerSettings.MAX_MESSAGE_AGE)):
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

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

from mailer.checks.database import check_migrations
from mailer.checks.delivery import check_delivery_backend, check_providers, check_quotas
from mailer.checks.settings import (
    check_error_handling,
    check_idempotency_window,
    check_lock_path,
    check_settings,
    check_tasks,
    check_workers,
)

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

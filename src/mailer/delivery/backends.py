"""Opening the backend that delivers queued mail (``open_backend``).

Which alias that is, and whether it would queue the mail again, is
:mod:`mailer.queue.aliases`.
"""

from __future__ import annotations

from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from mailer.conf import (
    mailers_configured,
    mailers_setting,
)
from mailer.exceptions import DeliveryBackendLoop, MailerConfigurationError
from mailer.queue.aliases import (
    DEFAULT_ALIAS,
    alias_problem,
    check_legacy_backend,
    delivery_alias_of,
)


def open_backend(alias: str) -> BaseEmailBackend:
    """A new, unopened delivery backend for rows whose ``mailer`` field is ``alias``.

    An empty alias means MAILER_EMAIL_BACKEND, or with MAILERS the alias that
    delivers for "default" (rows queued before the project moved to MAILERS).
    """
    if not alias and mailers_configured():
        alias = delivery_alias_of(DEFAULT_ALIAS)
    if alias:
        problem = alias_problem(alias)
        if problem:
            known = mailers_configured() and alias in mailers_setting()
            raise (DeliveryBackendLoop if known else MailerConfigurationError)(problem)
        from django.core.mail import mailers  # DJANGO_COMPAT(<6.1): only 6.1 has it

        backend: BaseEmailBackend = mailers[alias]
        return backend
    path = check_legacy_backend()
    try:
        cls = import_string(path)
    except ImportError as error:
        raise MailerConfigurationError(
            f"MAILER_EMAIL_BACKEND {path!r} cannot be imported: {error}"
        ) from error
    instance: BaseEmailBackend = cls()
    return instance

"""Checks of the backends that deliver queued mail: loops, imports, MAILERS, providers, quotas."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from mailer.checks.common import TAG, import_problem, valid
from mailer.conf import (
    DEFAULT_DELIVERY_BACKEND,
    MailerSettings,
    mailers_configured,
    mailers_defined,
    mailers_setting,
    settings,
)
from mailer.priorities import parse_priority
from mailer.queue.aliases import is_queueing_backend


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

    if not valid(MailerSettings.EMAIL_BACKEND):
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
    problem = import_problem(path)
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
        problem = import_problem(path)
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
        path = settings.EMAIL_BACKEND if valid(MailerSettings.EMAIL_BACKEND) else None
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


@register(TAG)
def check_quotas(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.W055: a MAILER_QUOTAS key that no queued mail is delivered through."""
    if not valid(MailerSettings.QUOTAS):
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

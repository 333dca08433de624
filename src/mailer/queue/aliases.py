"""Which MAILERS alias delivers queued mail, in both configuration styles.

* ``EMAIL_BACKEND = "mailer.backend.DbBackend"`` (any supported Django): mail
  is delivered through ``MAILER_EMAIL_BACKEND``. Queued rows have an empty
  ``mailer`` field.
* Django 6.1 ``MAILERS``: a ``DbBackend`` entry names, in its ``OPTIONS``,
  the alias that delivers (``"mailer": "smtp"``). Each queued row remembers
  that alias and is delivered through ``django.core.mail.mailers[alias]``.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from mailer.conf import (
    DEFAULT_DELIVERY_BACKEND,
    QUEUEING_BACKEND,
    mailers_configured,
    mailers_setting,
    settings,
)
from mailer.exceptions import DeliveryBackendLoop, MailerConfigurationError

DEFAULT_ALIAS = "default"


def is_queueing_backend(path: str | None) -> bool:
    """Is ``path`` our DbBackend (or a subclass of it)?"""
    if not path:
        return False
    if path == QUEUEING_BACKEND:
        return True
    try:
        cls = import_string(path)
    except Exception:  # cannot be imported, so not ours; mailer.E003 reports it
        return False
    # DbBackend and its subclasses say so; importing DbBackend here would tie the
    # configuration to the face of the package.
    return isinstance(cls, type) and getattr(cls, "queues_mail", False) is True


def alias_config(alias: str) -> dict[str, Any]:
    try:
        return mailers_setting()[alias]
    except KeyError:
        raise MailerConfigurationError(
            f"MAILERS has no alias {alias!r}, which queued mail is to be delivered through."
        ) from None


def queueing_options(alias: str) -> dict[str, Any] | None:
    """The OPTIONS of MAILERS alias ``alias`` if it is a DbBackend, else None."""
    config = alias_config(alias)
    if not is_queueing_backend(config.get("BACKEND")):
        return None
    return dict(config.get("OPTIONS") or {})


def delivery_alias_of(alias: str) -> str:
    """The alias that delivers mail queued through MAILERS alias ``alias``.

    For a DbBackend alias that is its ``OPTIONS["mailer"]``; any other alias
    delivers its own mail.
    """
    options = queueing_options(alias)
    if options is None:
        return alias
    target = options.get("mailer")
    if not target or not isinstance(target, str):
        raise MailerConfigurationError(
            f"MAILERS[{alias!r}] uses {QUEUEING_BACKEND}; its OPTIONS must name the "
            "alias that delivers queued mail, for example {'mailer': 'smtp'}."
        )
    check_delivery_alias(target, f"MAILERS[{alias!r}]['OPTIONS']['mailer']")
    return target


def default_priority_of(alias: str) -> Any:
    """The ``priority`` OPTION of a DbBackend alias (None: not set, or not a DbBackend)."""
    options = queueing_options(alias)
    return None if options is None else options.get("priority")


def check_delivery_alias(target: str, source: str) -> None:
    """Refuse a delivery alias that does not exist or that would queue mail again.

    ``source`` says where the alias was named, for the error message.
    """
    known = mailers_setting()
    if target not in known:
        raise MailerConfigurationError(
            f"{source} is {target!r}, but MAILERS has no such alias "
            f"(it has {', '.join(map(repr, known)) or 'none'})."
        )
    if is_queueing_backend(known[target].get("BACKEND")):
        raise DeliveryBackendLoop(
            f"{source} is {target!r}, whose BACKEND in MAILERS is {QUEUEING_BACKEND} too: "
            "queued mail would be queued again forever. Point it at an alias that really "
            "sends mail."
        )


def default_delivery_alias(using: str | None = None) -> str:
    """The ``mailer`` value to store for mail queued through the public API.

    Empty in the EMAIL_BACKEND style (MAILER_EMAIL_BACKEND delivers); in the
    MAILERS style, the alias that delivers for ``using`` (default: "default").
    """
    if not mailers_configured():
        if using not in (None, DEFAULT_ALIAS):
            raise MailerConfigurationError(
                f"using={using!r} needs Django's MAILERS setting, which is not configured."
            )
        check_legacy_backend()
        return ""
    return delivery_alias_of(using or DEFAULT_ALIAS)


def check_legacy_backend() -> str:
    """The MAILER_EMAIL_BACKEND path, refusing one that would queue mail again."""
    path = settings.EMAIL_BACKEND
    if is_queueing_backend(path):
        raise DeliveryBackendLoop(
            f"MAILER_EMAIL_BACKEND is {path!r}, the backend that queues mail: queued mail "
            "would be queued again forever. Set EMAIL_BACKEND to it, and "
            "MAILER_EMAIL_BACKEND to the backend that really sends mail, such as "
            f"{DEFAULT_DELIVERY_BACKEND!r}."
        )
    return path


def alias_problem(alias: str) -> str | None:
    """Why mail whose ``mailer`` field is ``alias`` cannot be delivered through it, or None.

    An empty alias is the default delivery backend, always a candidate.
    """
    if not alias:
        return None
    if not mailers_configured():
        return f"Queued mail names the mailer {alias!r}, but MAILERS is not configured."
    if alias not in mailers_setting():
        return f"Queued mail names the mailer {alias!r}, which MAILERS no longer has."
    if is_queueing_backend(alias_config(alias).get("BACKEND")):
        return (
            f"Queued mail names the mailer {alias!r}, whose BACKEND in MAILERS is "
            f"{QUEUEING_BACKEND}: it would be queued again forever."
        )
    return None

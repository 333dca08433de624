"""System checks: a misconfiguration is reported at start-up, with a stable id."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

from .conf import MailerSettings, settings


@register("mailer")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E002: a MAILER_* setting has the wrong type or value."""
    errors: list[CheckMessage] = []
    for setting in MailerSettings.all_settings():
        try:
            setting.validate(setting.name, setting.raw())
        except Exception as error:
            errors.append(Error(str(error), id="mailer.E002", obj=setting.name))
    return errors


@register("mailer")
def check_delivery_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """mailer.E001: queued mail would be delivered through the queue itself."""
    from .exceptions import DeliveryBackendLoop, MailerConfigurationError
    from .mailers import default_delivery_alias

    try:
        default_delivery_alias()
    except DeliveryBackendLoop as error:
        return [Error(str(error), id="mailer.E001")]
    except MailerConfigurationError as error:
        return [Error(str(error), id="mailer.E003")]
    return []


__all__ = ["check_delivery_backend", "check_settings", "settings"]

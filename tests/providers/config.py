"""Django configured to deliver through anymail's real backends at the local provider APIs,
in either configuration style (the fixtures in tests/providers/fixtures.py use it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import django
from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from . import mailgun, postmark, ses
from .server import ProviderAPI

# DJANGO_COMPAT(<6.1): MAILERS aliases are new in Django 6.1.
HAS_MAILERS = django.VERSION >= (6, 1)
STYLES = ["mailers", "legacy"] if HAS_MAILERS else ["legacy"]
PROVIDERS = ["postmark", "mailgun", "ses"]

BACKENDS = {
    "postmark": "anymail.backends.postmark.EmailBackend",
    "mailgun": "anymail.backends.mailgun.EmailBackend",
    "ses": "anymail.backends.amazon_ses.EmailBackend",
}
# The prefix of each provider's settings in ANYMAIL (the legacy style).
ESP_PREFIX = {"postmark": "POSTMARK", "mailgun": "MAILGUN", "ses": "AMAZON_SES"}
# Options anymail reads without a provider prefix (ANYMAIL["REQUESTS_TIMEOUT"]).
UNPREFIXED = {"requests_timeout"}
# Generous: answers come at once, but the machine may be busy.
DEFAULT_TIMEOUT = 10.0


def provider_options(name: str, api: ProviderAPI, timeout: float, retries: int) -> dict[str, Any]:
    """The anymail backend's options (its keyword arguments, as MAILERS OPTIONS take them)."""
    if name == "postmark":
        return {
            "server_token": postmark.SERVER_TOKEN,
            "api_url": f"{api.url}/",
            "requests_timeout": timeout,
        }
    if name == "mailgun":
        return {
            "api_key": mailgun.API_KEY,
            "api_url": f"{api.url}/v3/",
            "requests_timeout": timeout,
        }
    return {
        # boto3 with explicit dummy credentials and region reads no AWS configuration
        # or metadata service, and endpoint_url sends every call to the local server.
        "session_params": {
            "aws_access_key_id": ses.ACCESS_KEY_ID,
            "aws_secret_access_key": ses.SECRET_ACCESS_KEY,
            "region_name": ses.REGION,
        },
        "client_params": {
            "endpoint_url": api.url,
            "config": {
                "connect_timeout": timeout,
                "read_timeout": timeout,
                # boto3 retries throttling, 5xx, timeouts and dropped connections on its
                # own (its default, standard mode: 3 attempts in all) unless told not to.
                "retries": {"mode": "standard", "total_max_attempts": retries},
            },
        },
    }


def anymail_settings(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The same options as ANYMAIL settings (``server_token`` -> ``POSTMARK_SERVER_TOKEN``)."""
    return {
        key.upper() if key in UNPREFIXED else f"{ESP_PREFIX[name]}_{key.upper()}": value
        for key, value in options.items()
    }


def merge_anymail(settings: Any, values: dict[str, Any]) -> None:
    settings.ANYMAIL = {**getattr(django_settings, "ANYMAIL", {}), **values}


@dataclass
class Provider:
    """One provider for a test: its local API and Django configured to deliver through it."""

    name: str
    api: ProviderAPI
    style: str
    settings: Any = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        """The MAILERS alias that delivers (in the "mailers" style)."""
        return self.name

    @property
    def backend_path(self) -> str:
        return BACKENDS[self.name]

    def configure(self, timeout: float = DEFAULT_TIMEOUT, retries: int = 1, **options: Any) -> None:
        """(Re)configure the backend: client timeout (anymail's REQUESTS_TIMEOUT, boto's
        read/connect timeouts), boto3's total attempts, and any other option by its
        anymail name (``api_url=...``, ``message_stream=...``)."""
        self.options = {**provider_options(self.name, self.api, timeout, retries), **options}
        if self.style == "mailers":
            mailers = {alias: {**config} for alias, config in django_settings.MAILERS.items()}
            mailers["default"] = {
                "BACKEND": "mailer.backend.DbBackend",
                "OPTIONS": {"mailer": self.alias},
            }
            mailers[self.alias] = {"BACKEND": self.backend_path, "OPTIONS": dict(self.options)}
            self.settings.MAILERS = mailers
        else:
            self.settings.MAILER_EMAIL_BACKEND = self.backend_path
            merge_anymail(self.settings, anymail_settings(self.name, self.options))

    def connection(self) -> BaseEmailBackend:
        """A new delivery backend, made the way the queue makes it for this style."""
        if self.style == "mailers":
            from django.core.mail import mailers  # DJANGO_COMPAT(<6.1): only 6.1 has it

            backend: BaseEmailBackend = mailers[self.alias]
            return backend
        instance: BaseEmailBackend = import_string(django_settings.MAILER_EMAIL_BACKEND)()
        return instance

    def send(self, message: EmailMessage) -> EmailMessage:
        """Send ``message`` straight through the anymail backend (not the queue); what anymail
        raises propagates, and ``message.anymail_status`` tells what it made of the answer."""
        with self.connection() as connection:
            connection.send_messages([message])
        return message

"""Pytest fixtures: the providers' local APIs, and Django sending through anymail's real
Postmark, Mailgun and Amazon SES backends pointed at them.

Plug them in with ``pytest_plugins = ["tests.providers.fixtures"]`` in a test module
(as tests/test_providers_infra.py does) or, for the whole suite, in tests/conftest.py.

* ``postmark_api`` / ``mailgun_api`` / ``ses_api`` (session): the running servers.
* ``postmark_provider`` / ``mailgun_provider`` / ``ses_provider``: a ``Provider``: the
  server emptied for this test and Django configured, in the style ``provider_style``
  gives, so that the queue delivers through that anymail backend. ``provider`` is each
  of the three in turn.
* ``provider_style``: "mailers" (Django 6.1's MAILERS: ``default`` is the queue's
  DbBackend with ``OPTIONS={"mailer": <provider>}``, the provider's alias holds the
  anymail backend and its settings in ``OPTIONS``) and "legacy" (``EMAIL_BACKEND`` is
  the DbBackend, ``MAILER_EMAIL_BACKEND`` the anymail backend, its settings in
  ``ANYMAIL``). Tests run in each style the Django version has; a test can pin one
  with ``@pytest.mark.parametrize("provider_style", ["legacy"], indirect=True)``.
* ``webhooks``: anymail's tracking webhook URLs installed (tests/providers/urls.py), the
  webhook secret and Mailgun's signing key set; ``webhooks.post(payload)`` posts a
  payload of tests/providers/webhooks.py and gives the response and the tracking events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from . import mailgun, postmark, ses
from .config import PROVIDERS, STYLES, Provider, merge_anymail
from .server import ProviderAPI, running
from .webhooks import WEBHOOK_SECRET, Payload, WebhookResult, post


def _serve(spec: Any) -> Iterator[ProviderAPI]:
    with running(spec) as api:
        yield api


@pytest.fixture(scope="session")
def postmark_api() -> Iterator[ProviderAPI]:
    yield from _serve(postmark.PostmarkSpec())


@pytest.fixture(scope="session")
def mailgun_api() -> Iterator[ProviderAPI]:
    yield from _serve(mailgun.MailgunSpec())


@pytest.fixture(scope="session")
def ses_api() -> Iterator[ProviderAPI]:
    yield from _serve(ses.SESSpec())


@pytest.fixture(params=STYLES)
def provider_style(request: pytest.FixtureRequest) -> str:
    """The configuration style; sets it up with tests/conftest.py's style fixtures."""
    style: str = request.param
    request.getfixturevalue("legacy_style" if style == "legacy" else "mailers_style")
    return style


def _provider(
    name: str, api: ProviderAPI, style: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Provider]:
    # A proxy configured in the environment must not catch requests to 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    api.reset()
    provider = Provider(name, api, style, settings)
    provider.configure()
    yield provider
    api.reset()


@pytest.fixture
def postmark_provider(
    postmark_api: ProviderAPI, provider_style: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Provider]:
    yield from _provider("postmark", postmark_api, provider_style, settings, monkeypatch)


@pytest.fixture
def mailgun_provider(
    mailgun_api: ProviderAPI, provider_style: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Provider]:
    yield from _provider("mailgun", mailgun_api, provider_style, settings, monkeypatch)


@pytest.fixture
def ses_provider(
    ses_api: ProviderAPI, provider_style: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Provider]:
    yield from _provider("ses", ses_api, provider_style, settings, monkeypatch)


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, provider_style: str) -> Provider:
    """Each provider in turn (in each style: ``provider_style`` is asked for by name so
    that pytest parametrizes it)."""
    found: Provider = request.getfixturevalue(f"{request.param}_provider")
    return found


@dataclass
class Webhooks:
    """Posts provider payloads to anymail's tracking webhooks with Django's test client."""

    client: Client

    def post(self, payload: Payload, secret: str | None = WEBHOOK_SECRET) -> WebhookResult:
        return post(self.client, payload, secret)


@pytest.fixture
def webhooks(settings: Any) -> Webhooks:
    """anymail's webhook URLs (tests/providers/urls.py), its secret and Mailgun's signing key."""
    settings.ROOT_URLCONF = "tests.providers.urls"
    merge_anymail(
        settings,
        {
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MAILGUN_WEBHOOK_SIGNING_KEY": mailgun.WEBHOOK_SIGNING_KEY,
        },
    )
    return Webhooks(Client())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests in the legacy style may meet Django 6.1's deprecation warnings for it, as the
    tests that use tests/conftest.py's ``legacy_style`` fixture directly may."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("provider_style") == "legacy":
            # DJANGO_COMPAT(<6.1): on 6.1 the EMAIL_* settings are deprecated.
            item.add_marker(pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"))

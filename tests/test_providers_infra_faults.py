"""Hangs past the client's timeout, dropped and refused connections, and client retries,
against the local provider APIs (tests/providers/), with anymail's real backends.

What reaches the provider is counted: requests never resends; boto3 does when allowed
more than one attempt, so after a hang SES may get a message twice.
"""

from __future__ import annotations

import pytest
import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRequestsAPIError
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from .providers import mailgun, postmark, ses
from .providers.config import Provider
from .providers.server import drop, hang, refusing_port
from .providers.status import ALICE, statuses
from .samples import plain, token_of

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.no_database


@pytest.mark.parametrize("name", ["postmark", "mailgun"])
def test_requests_providers_time_out_on_a_hang(
    request: pytest.FixtureRequest, provider_style: str, name: str
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    provider.configure(timeout=0.5)
    provider.api.queue(hang())
    message = plain([ALICE])

    with pytest.raises(AnymailRequestsAPIError) as raised:
        provider.send(message)

    error = raised.value
    assert isinstance(error, requests.ReadTimeout) and isinstance(error, requests.Timeout)
    assert isinstance(error.__cause__, requests.ReadTimeout)
    assert error.status_code is None and error.response is None
    assert message.anymail_status.recipients == {}
    assert provider.api.received_once(token_of(message)).step == "hang"


@pytest.mark.parametrize("mid_request", [False, True], ids=["after-request", "mid-request"])
@pytest.mark.parametrize("name", ["postmark", "mailgun"])
def test_requests_providers_dropped_connection(
    request: pytest.FixtureRequest, provider_style: str, name: str, mid_request: bool
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    provider.api.queue(drop(mid_request))
    message = plain([ALICE])

    with pytest.raises(AnymailRequestsAPIError) as raised:
        provider.send(message)

    error = raised.value
    assert isinstance(error, requests.ConnectionError)
    assert not isinstance(error, requests.Timeout)
    assert error.status_code is None and error.response is None
    assert message.anymail_status.recipients == {}
    [received] = provider.api.requests
    assert received.complete is not mid_request


@pytest.mark.parametrize("name", ["postmark", "mailgun"])
def test_requests_providers_refused_connection(
    request: pytest.FixtureRequest, provider_style: str, name: str
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/" + ("v3/" if name == "mailgun" else "")
        provider.configure(api_url=url)
        with pytest.raises(AnymailRequestsAPIError) as raised:
            provider.send(plain([ALICE]))

    assert isinstance(raised.value, requests.ConnectionError)
    assert provider.api.requests == []


def test_no_provider_resends_on_its_own(provider: Provider) -> None:
    """requests never resends; boto3 does not either with total_max_attempts=1 (the
    fixtures' default)."""
    provider.api.always(
        {
            "postmark": postmark.server_error(),
            "mailgun": mailgun.server_error(),
            "ses": ses.internal_failure(),
        }[provider.name]
    )
    message = plain([ALICE])

    with pytest.raises(AnymailError):
        provider.send(message)

    provider.api.received_once(token_of(message))


def test_ses_times_out_on_a_hang(ses_provider: Provider) -> None:
    ses_provider.configure(timeout=0.5)
    ses_provider.api.queue(hang())
    message = plain([ALICE])

    with pytest.raises(AnymailAPIError) as raised:
        ses_provider.send(message)

    assert isinstance(raised.value.__cause__, ReadTimeoutError)
    assert raised.value.response is None and raised.value.status_code is None
    ses_provider.api.received_once(token_of(message))


@pytest.mark.parametrize("mid_request", [False, True], ids=["after-request", "mid-request"])
def test_ses_dropped_connection(ses_provider: Provider, mid_request: bool) -> None:
    ses_provider.api.queue(drop(mid_request))
    message = plain([ALICE])

    with pytest.raises(AnymailAPIError) as raised:
        ses_provider.send(message)

    assert isinstance(raised.value.__cause__, ConnectionClosedError)
    assert raised.value.response is None and message.anymail_status.recipients == {}
    [received] = ses_provider.api.requests
    assert received.complete is not mid_request


def test_ses_boto_retries_throttling_by_itself(ses_provider: Provider) -> None:
    """With more than one attempt allowed, boto3 answers a throttle by sending again
    (after its own back-off: under a second for the first retry)."""
    ses_provider.configure(retries=2)
    ses_provider.api.queue(ses.throttled())
    message = plain([ALICE])

    ses_provider.send(message)

    assert [r.step for r in ses_provider.api.requests_for(token_of(message))] == [
        "ses.TooManyRequestsException",
        "ses.ok",
    ]
    assert statuses(message) == {ALICE: "queued"}


def test_ses_boto_resends_after_a_timeout_so_the_provider_may_get_it_twice(
    ses_provider: Provider,
) -> None:
    # Room for the second attempt's answer on a busy machine; the first never comes.
    ses_provider.configure(timeout=3.0, retries=2)
    ses_provider.api.queue(hang())
    message = plain([ALICE])

    ses_provider.send(message)

    assert [r.step for r in ses_provider.api.requests_for(token_of(message))] == ["hang", "ses.ok"]

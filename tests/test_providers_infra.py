"""The provider test infrastructure itself (tests/providers/), and what anymail really does.

anymail's real Postmark, Mailgun and Amazon SES backends send through the local API
server, in each configuration style; each answer of the catalogue gives the
``anymail_status`` or the exception stated here (the facts are summed up in
tests/providers/__init__.py), and every request reaches the provider exactly once.
Hangs and dropped connections: test_providers_infra_faults.py; tracking webhooks:
test_providers_infra_webhooks.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from botocore.exceptions import ClientError
from django.core.exceptions import ImproperlyConfigured

from .providers import mailgun, postmark, ses
from .providers.config import HAS_MAILERS, Provider
from .providers.postmark import PostmarkSpec
from .providers.server import hang, running
from .providers.status import ALICE, BOB, CAROL, DAN, message_ids, statuses
from .providers.webhooks import basic_auth
from .samples import plain, token_of

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.no_database


# What reaches the provider.


def test_every_request_is_recorded_with_its_recipients_headers_and_message(
    provider: Provider,
) -> None:
    message = plain([ALICE, "Bob <bob@example.com>"], cc=[CAROL], bcc=[DAN])

    provider.send(message)

    request = provider.api.received_once(token_of(message))
    assert request.method == "POST"
    assert sorted(request.recipients) == sorted([ALICE, BOB, CAROL, DAN])
    assert request.complete and request.step == provider.api.spec.default().name
    if provider.name == "postmark":
        assert request.path == "/email"
        assert request.header("X-Postmark-Server-Token") == postmark.SERVER_TOKEN
        assert request.json["Subject"] == message.subject
    elif provider.name == "mailgun":
        assert request.path == "/v3/example.com/messages"
        assert request.header("Authorization") == basic_auth(f"api:{mailgun.API_KEY}")
        assert request.form["subject"] == [message.subject]
    else:
        assert request.path == "/v2/email/outbound-emails"
        authorization = request.header("Authorization") or ""
        assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ses.ACCESS_KEY_ID}/")
        parsed = request.message
        assert parsed is not None and parsed["Subject"] == message.subject
        assert "dan@example.com" not in parsed.as_string()  # Bcc only in the envelope


def test_mailgun_attachments_arrive_as_multipart_files(mailgun_provider: Provider) -> None:
    message = plain([ALICE])
    message.attach("report.txt", "figures\n", "text/plain")

    mailgun_provider.send(message)

    request = mailgun_provider.api.received_once(token_of(message))
    assert request.header("Content-Type", "").startswith("multipart/form-data")
    assert request.files == [("attachment", "report.txt", b"figures\n")]


def test_the_server_answers_in_the_order_queued_then_with_success(
    postmark_provider: Provider,
) -> None:
    api = postmark_provider.api
    api.queue(postmark.rate_limited(), postmark.server_error())
    first, second, third = plain(), plain(), plain()

    with pytest.raises(AnymailRequestsAPIError) as limited:
        postmark_provider.send(first)
    with pytest.raises(AnymailRequestsAPIError) as failed:
        postmark_provider.send(second)
    postmark_provider.send(third)

    assert (limited.value.status_code, failed.value.status_code) == (429, 500)
    assert [request.step for request in api.requests] == [
        "postmark.error(429)",
        "postmark.server_error",
        "postmark.ok",
    ]
    assert api.unused == []


def test_stopping_the_server_ends_hung_and_idle_connections() -> None:
    """A test that fails while a request hangs still gets the server stopped: stop()
    closes every connection and joins every handler thread."""
    outcome: list[BaseException | requests.Response] = []

    def client(url: str) -> None:
        try:
            outcome.append(requests.post(f"{url}/email", json={}, timeout=60))
        except requests.RequestException as error:
            outcome.append(error)

    with running(PostmarkSpec()) as api:
        api.queue(hang())
        thread = threading.Thread(target=client, args=(api.url,))
        thread.start()
        api.wait_for(1)
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
    assert api.requests[0].step == "hang"


def test_the_configuration_styles_reach_the_backend(provider: Provider) -> None:
    connection = provider.connection()

    assert f"{type(connection).__module__}.{type(connection).__name__}" == provider.backend_path
    if provider.style == "mailers":
        assert HAS_MAILERS and connection.alias == provider.name  # type: ignore[attr-defined]
    if provider.name == "ses":
        assert connection.client_params["endpoint_url"] == provider.api.url  # type: ignore[attr-defined]
    else:
        assert connection.api_url.startswith(provider.api.url)  # type: ignore[attr-defined]


# Accepted sends: anymail_status per recipient.


def test_postmark_accepts_with_one_message_id_for_every_recipient(
    postmark_provider: Provider,
) -> None:
    message = postmark_provider.send(plain([ALICE, BOB], cc=[CAROL]))

    answer = message.anymail_status.esp_response.json()
    assert statuses(message) == {ALICE: "sent", BOB: "sent", CAROL: "sent"}
    assert set(message_ids(message).values()) == {answer["MessageID"]}
    assert message.anymail_status.message_id == answer["MessageID"]


def test_postmark_delayed_delivery_is_queued(postmark_provider: Provider) -> None:
    postmark_provider.api.queue(postmark.delayed())

    message = postmark_provider.send(plain([ALICE]))

    assert statuses(message) == {ALICE: "queued"}
    assert message_ids(message)[ALICE] is not None


def test_postmark_inactive_recipients_among_active_ones_are_rejected_without_error(
    postmark_provider: Provider,
) -> None:
    postmark_provider.api.queue(postmark.inactive_among(BOB))

    message = postmark_provider.send(plain([ALICE, BOB]))

    assert statuses(message) == {ALICE: "sent", BOB: "rejected"}
    assert message_ids(message)[BOB] is None and message_ids(message)[ALICE] is not None


def test_postmark_batch_gives_each_recipient_its_own_message_id(
    postmark_provider: Provider,
) -> None:
    message = plain([ALICE, BOB])
    message.merge_metadata = {ALICE: {"n": "1"}, BOB: {"n": "2"}}  # type: ignore[attr-defined]

    postmark_provider.send(message)

    request = postmark_provider.api.received_once(token_of(message))
    assert request.path == "/email/batch" and len(request.json) == 2
    assert statuses(message) == {ALICE: "sent", BOB: "sent"}
    assert len(set(message_ids(message).values())) == 2


def test_postmark_batch_with_an_inactive_recipient_is_partly_rejected(
    postmark_provider: Provider,
) -> None:
    postmark_provider.api.queue(postmark.batch_inactive(BOB))
    message = plain([ALICE, BOB, CAROL])
    message.merge_metadata = {ALICE: {}, BOB: {}, CAROL: {}}  # type: ignore[attr-defined]

    postmark_provider.send(message)

    assert statuses(message) == {ALICE: "sent", BOB: "rejected", CAROL: "sent"}
    assert message_ids(message)[BOB] is None


def test_mailgun_queues_every_recipient_under_one_id(mailgun_provider: Provider) -> None:
    message = mailgun_provider.send(plain([ALICE, BOB]))

    answer = message.anymail_status.esp_response.json()
    assert statuses(message) == {ALICE: "queued", BOB: "queued"}
    assert set(message_ids(message).values()) == {answer["id"]}
    assert answer["id"].startswith("<") and answer["id"].endswith("@example.com>")


def test_ses_queues_every_recipient_under_one_id(ses_provider: Provider) -> None:
    message = ses_provider.send(plain([ALICE, BOB], bcc=[DAN]))

    answer = message.anymail_status.esp_response
    assert statuses(message) == {ALICE: "queued", BOB: "queued", DAN: "queued"}
    assert set(message_ids(message).values()) == {answer["MessageId"]}
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


# Refused sends: what anymail raises for each documented error answer.

# (answer, HTTP status anymail reports as status_code, the provider's words in the response)
REQUESTS_API_ERRORS = [
    ("postmark", postmark.invalid_from(), 422, "Invalid 'From' address"),
    ("postmark", postmark.unauthorized(), 401, "Server Token"),
    ("postmark", postmark.rate_limited(), 429, "Rate limit exceeded"),
    ("postmark", postmark.server_error(), 500, "Internal Server Error"),
    ("postmark", postmark.maintenance(), 503, "maintenance"),
    ("mailgun", mailgun.invalid_address(), 400, "'to' parameter is not a valid address"),
    ("mailgun", mailgun.unauthorized(), 401, "Forbidden"),
    ("mailgun", mailgun.forbidden(), 403, "not allowed to send"),
    ("mailgun", mailgun.domain_not_found(), 404, "Domain not found"),
    ("mailgun", mailgun.rate_limited(), 429, "Too many requests"),
    ("mailgun", mailgun.server_error(), 500, "Internal Server Error"),
]


@pytest.mark.parametrize(
    ("name", "answer", "status", "words"),
    REQUESTS_API_ERRORS,
    ids=[f"{name}-{answer.name}-{status}" for name, answer, status, _ in REQUESTS_API_ERRORS],
)
def test_http_error_answers_raise_anymail_requests_api_error(
    request: pytest.FixtureRequest,
    provider_style: str,
    name: str,
    answer: Any,
    status: int,
    words: str,
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    provider.api.queue(answer)
    message = plain([ALICE, BOB])

    with pytest.raises(AnymailRequestsAPIError) as raised:
        provider.send(message)

    error = raised.value
    assert isinstance(error, requests.HTTPError) and isinstance(error, OSError)
    assert not isinstance(error, AnymailRecipientsRefused)
    assert error.status_code == status and error.response.status_code == status
    assert words in error.response.text and words in str(error)
    assert message.anymail_status.status is None and message.anymail_status.recipients == {}
    provider.api.received_once(token_of(message))


def test_postmark_error_body_keeps_its_error_code(postmark_provider: Provider) -> None:
    postmark_provider.api.queue(postmark.invalid_from())

    with pytest.raises(AnymailRequestsAPIError) as raised:
        postmark_provider.send(plain([ALICE]))

    assert raised.value.response.json()["ErrorCode"] == 300


def test_mailgun_unknown_domain_is_reworded_by_anymail(mailgun_provider: Provider) -> None:
    mailgun_provider.api.queue(mailgun.domain_not_found())

    with pytest.raises(AnymailRequestsAPIError) as raised:
        mailgun_provider.send(plain([ALICE]))

    assert str(raised.value).startswith("Unknown sender domain 'example.com'")


@pytest.mark.parametrize(
    "answer",
    [postmark.inactive_recipient(ALICE, BOB), postmark.invalid_to(ALICE)],
    ids=["406", "300"],
)
def test_postmark_refusing_every_recipient_raises_recipients_refused(
    postmark_provider: Provider, answer: Any
) -> None:
    postmark_provider.api.queue(answer)
    many = answer.name == "postmark.error(406)"
    message = plain([ALICE, BOB] if many else [ALICE])

    with pytest.raises(AnymailRecipientsRefused) as raised:
        postmark_provider.send(message)

    error = raised.value
    expected = "rejected" if many else "invalid"
    assert statuses(message) == ({ALICE: expected, BOB: expected} if many else {ALICE: expected})
    assert not isinstance(error, requests.HTTPError)
    assert error.status_code is None and error.response.status_code == 422
    assert str(error).startswith("All message recipients were rejected or invalid")
    postmark_provider.api.received_once(token_of(message))


def test_postmark_invalid_recipient_among_others_is_not_an_error(
    postmark_provider: Provider,
) -> None:
    """Postmark refused the whole request (422, nothing sent), but anymail raises nothing:
    the invalid recipient is "invalid", the others "unknown"."""
    postmark_provider.api.queue(postmark.invalid_to(BOB))
    message = plain([ALICE, BOB])

    assert postmark_provider.connection().send_messages([message]) == 1

    assert statuses(message) == {ALICE: "unknown", BOB: "invalid"}
    assert message_ids(message) == {ALICE: None, BOB: None}
    assert message.anymail_status.esp_response.status_code == 422


SES_ERRORS = [
    (ses.throttled(), 429, "TooManyRequestsException", "Maximum sending rate exceeded."),
    (ses.daily_quota_exceeded(), 429, "TooManyRequestsException", "Daily message quota exceeded."),
    (ses.not_verified(ALICE), 400, "MessageRejected", "Email address is not verified."),
    (ses.bad_request(), 400, "BadRequestException", "Illegal address"),
    (ses.account_suspended(), 400, "AccountSuspendedException", "permanently restricted"),
    (ses.sending_paused(), 400, "SendingPausedException", "currently paused"),
    (ses.invalid_credentials(), 403, "UnrecognizedClientException", "security token"),
    (ses.internal_failure(), 500, "InternalFailure", "unknown error"),
    (ses.service_unavailable(), 503, "ServiceUnavailable", "temporary failure"),
]


@pytest.mark.parametrize(
    ("answer", "status", "code", "words"), SES_ERRORS, ids=[code for _, _, code, _ in SES_ERRORS]
)
def test_ses_error_answers_raise_anymail_api_error_with_boto_error(
    ses_provider: Provider, answer: Any, status: int, code: str, words: str
) -> None:
    ses_provider.api.queue(answer)
    message = plain([ALICE, BOB])

    with pytest.raises(AnymailAPIError) as raised:
        ses_provider.send(message)

    error = raised.value
    assert not isinstance(error, AnymailRequestsAPIError) and not isinstance(error, OSError)
    assert error.status_code is None  # the HTTP status is only in the boto response
    assert error.response["Error"]["Code"] == code
    assert words in error.response["Error"]["Message"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert isinstance(error.__cause__, ClientError) and error.__cause__.response is error.response
    assert code in str(error) and words in str(error)
    ses_provider.api.received_once(token_of(message))


# Configuration errors.


def test_a_missing_credential_is_a_configuration_error(postmark_provider: Provider) -> None:
    settings = postmark_provider.settings
    if postmark_provider.style == "mailers":
        mailers = {**settings.MAILERS}
        options = {**mailers["postmark"]["OPTIONS"]}
        del options["server_token"]
        mailers["postmark"] = {**mailers["postmark"], "OPTIONS": options}
        settings.MAILERS = mailers
    else:
        anymail = {**settings.ANYMAIL}
        del anymail["POSTMARK_SERVER_TOKEN"]
        settings.ANYMAIL = anymail

    with pytest.raises(AnymailConfigurationError) as raised:
        postmark_provider.connection()

    assert isinstance(raised.value, ImproperlyConfigured)
    assert "server_token" in str(raised.value).lower()
    if postmark_provider.style == "mailers":
        from django.core.mail import InvalidMailer  # DJANGO_COMPAT(<6.1)

        assert isinstance(raised.value, InvalidMailer)


@pytest.mark.parametrize("provider_style", ["mailers"], indirect=True)
def test_an_unknown_option_under_mailers_is_refused(
    mailers_style: dict[str, Any], provider_style: str, postmark_provider: Provider
) -> None:
    from django.core.mail import InvalidMailer  # DJANGO_COMPAT(<6.1)

    postmark_provider.configure(server_tokn="typo")

    with pytest.raises(InvalidMailer, match="server_tokn"):
        postmark_provider.connection()

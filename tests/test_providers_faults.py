"""Delivering through a provider when no answer comes (hangs past the client's timeout,
dropped and refused connections), when the backend's configuration, account or
credentials are wrong, and when anymail itself refuses the message: django-anymail's
real backends against the local provider APIs, through ``send_all``."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from anymail.exceptions import (
    AnymailInvalidAddress,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from django.core.mail import EmailMessage

from mailer.delivery.classify import breaks_connection, classify
from mailer.engine import SendCounts, send_all
from mailer.models import RESULT_FAILURE, Message, MessageLog, Status
from mailer.outcome import Reply, Verdict

from .assertions import MailAssertions, find
from .providers import mailgun, postmark, ses
from .providers.config import Provider
from .providers.server import Drop, Hang, drop, hang, refusing_port
from .providers.server import Reply as Answer
from .providers.status import ALICE, BOB
from .samples import plain, token_of

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)

NO_ANSWER = {"postmark": "Postmark", "mailgun": "Mailgun", "ses": "Amazon SES"}


def queue(message: EmailMessage) -> EmailMessage:
    assert message.send() == 1
    return message


def due_again() -> None:
    Message.objects.filter(status=Status.DEFERRED).update(due_at=Message.objects.get().when_added)


# No answer: deferred, and sent on the next attempt.


@pytest.mark.parametrize(
    "fault", [hang(), drop(), drop(mid_request=True)], ids=["hang", "drop", "drop-mid-request"]
)
class TestNoAnswer(MailAssertions):
    def test_is_deferred_without_a_code_and_sent_on_the_next_attempt(
        self, provider: Provider, fault: Hang | Drop
    ) -> None:
        provider.configure(timeout=0.5)
        provider.api.queue(fault)
        message = queue(plain([ALICE, BOB]))

        assert send_all() == SendCounts(deferred=1)

        row = self.assert_deferred_with(message, None, f"no answer from {NO_ANSWER[provider.name]}")
        assert row.recipient_results == {}  # nobody is known to have it
        log = MessageLog.objects.get()
        assert log.result == RESULT_FAILURE and log.refused == 0
        due_again()

        assert send_all() == SendCounts(sent=1)

        # At least once: the provider may have taken the first copy before the connection
        # went (a hang past the timeout, a drop after the request); both carry one
        # Message-ID. Nothing is sent a third time.
        carried = provider.api.requests_for(token_of(message))
        assert len(carried) == (1 if isinstance(fault, Drop) and fault.mid_request else 2)
        assert carried[-1].step == provider.api.spec.default().name
        assert len(provider.api.requests) == 2


def test_a_refused_connection_is_deferred(provider: Provider) -> None:
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}"
        if provider.name == "ses":
            provider.configure(client_params={"endpoint_url": url})
        else:
            provider.configure(api_url=url + ("/v3/" if provider.name == "mailgun" else "/"))
        message = queue(plain([ALICE]))

        assert send_all() == SendCounts(deferred=1)

    row = find(token_of(message))
    assert row.status == Status.DEFERRED and row.last_code is None
    assert row.last_reply.startswith(f"no answer from {NO_ANSWER[provider.name]}")
    assert provider.api.requests == []


# The backend's configuration, account or credentials: the run stops, the mail waits.

ACCOUNT_ANSWERS: list[tuple[str, Answer, int, str]] = [
    ("postmark", postmark.unauthorized(), 401, "The Server Token you provided"),
    (
        "postmark",
        postmark.out_of_credits(),
        422,
        "You have run out of credits. (Postmark error 405)",
    ),
    ("mailgun", mailgun.unauthorized(), 401, "Forbidden"),
    ("mailgun", mailgun.forbidden(), 403, "not allowed to send: account disabled"),
    ("ses", ses.invalid_credentials(), 403, "UnrecognizedClientException"),
    ("ses", ses.account_suspended(), 400, "AccountSuspendedException"),
    ("ses", ses.sending_paused(), 400, "SendingPausedException"),
]


@pytest.mark.parametrize(
    ("name", "answer", "status", "words"),
    ACCOUNT_ANSWERS,
    ids=[f"{name}-{answer.name}" for name, answer, _, _ in ACCOUNT_ANSWERS],
)
def test_an_account_or_credential_refusal_stops_the_run_and_defers_the_message(
    request: pytest.FixtureRequest,
    provider_style: str,
    caplog: pytest.LogCaptureFixture,
    name: str,
    answer: Answer,
    status: int,
    words: str,
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    provider.api.queue(answer)
    first, second = queue(plain([ALICE])), queue(plain([BOB]))

    with caplog.at_level(logging.ERROR, logger="mailer.engine"):
        assert send_all() == SendCounts(deferred=1)

    row = find(token_of(first))
    assert row.status == Status.DEFERRED and row.last_code == status and words in row.last_reply
    assert find(token_of(second)).status == Status.QUEUED  # not tried: it would fail the same
    assert len(provider.api.requests) == 1
    assert "the delivery backend is misconfigured, stopping this run" in caplog.text


def test_a_missing_api_key_stops_the_run_with_a_clear_message(
    postmark_provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    settings = postmark_provider.settings
    if postmark_provider.style == "mailers":
        mailers = {**settings.MAILERS}
        options = {k: v for k, v in mailers["postmark"]["OPTIONS"].items() if k != "server_token"}
        mailers["postmark"] = {**mailers["postmark"], "OPTIONS": options}
        settings.MAILERS = mailers
    else:
        settings.ANYMAIL = {
            k: v for k, v in settings.ANYMAIL.items() if k != "POSTMARK_SERVER_TOKEN"
        }
    message = queue(plain([ALICE]))

    with caplog.at_level(logging.ERROR, logger="mailer.engine"):
        assert send_all() == SendCounts(deferred=1)

    row = find(token_of(message))
    assert row.status == Status.DEFERRED
    assert row.last_reply.startswith("the delivery backend is misconfigured: ")
    assert "server_token" in row.last_reply.lower()
    assert "the delivery backend is misconfigured, stopping this run" in caplog.text
    assert postmark_provider.api.requests == []


# anymail refuses the message itself: failed, with its words.


def test_a_feature_the_provider_lacks_fails_the_message(postmark_provider: Provider) -> None:
    message = plain([ALICE])
    message.tags = ["one", "two"]  # type: ignore[attr-defined]  # Postmark takes one tag
    queue(message)

    assert send_all() == SendCounts(failed=1)

    row = find(token_of(message))
    assert row.status == Status.FAILED and row.last_code is None
    assert "multiple tags" in row.last_reply
    assert postmark_provider.api.requests == []


@pytest.mark.parametrize(
    "error",
    [
        AnymailInvalidAddress("Invalid email address 'not an address'"),
        AnymailUnsupportedFeature("Postmark does not support multiple tags"),
        AnymailSerializationError(orig_err=TypeError("Decimal is not JSON serializable")),
    ],
    ids=["invalid-address", "unsupported-feature", "serialization-error"],
)
def test_what_anymail_cannot_send_is_permanent_with_its_text(error: Exception) -> None:
    outcome = classify(error, [ALICE])

    assert outcome.verdict is Verdict.PERMANENT
    assert outcome.reply.code is None and str(error).split("\n")[0] in outcome.reply.text
    assert [(r.address, r.verdict) for r in outcome.recipients] == [(ALICE, Verdict.PERMANENT)]


def test_an_http_error_answer_keeps_the_connection(postmark_provider: Any) -> None:
    """anymail's HTTP errors are OSErrors too, but the API answered: nothing to reopen."""
    postmark_provider.api.queue(postmark.rate_limited())
    with pytest.raises(OSError) as raised:
        postmark_provider.send(plain([ALICE]))

    assert breaks_connection(raised.value) is False
    assert classify(raised.value, [ALICE]).verdict is Verdict.TRANSIENT


def daily_quota(error: BaseException) -> tuple[Verdict, Reply] | None:
    """A project's classifier: SES's daily quota means "not before tomorrow"."""
    if "Daily message quota exceeded" in str(error):
        return Verdict.TRANSIENT, Reply(None, "SES daily quota used up: tomorrow")
    return None


def test_a_projects_classifier_is_asked_before_anymails_errors_are_read(
    ses_provider: Provider, settings: Any
) -> None:
    settings.MAILER_ERROR_CLASSIFIERS = [f"{__name__}.daily_quota"]
    ses_provider.api.queue(ses.daily_quota_exceeded(), ses.bad_request())
    quota, bad = queue(plain([ALICE])), queue(plain([BOB]))

    assert send_all() == SendCounts(deferred=1, failed=1)

    assert find(token_of(quota)).last_reply == "SES daily quota used up: tomorrow"
    assert find(token_of(bad)).last_code == 400  # not the classifier's: anymail's reading

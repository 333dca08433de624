"""Secrets in replies and exception texts never reach the queue, the log rows or the log files.

The texts are the ones real libraries produce: requests' HTTPError, botocore's
ClientError, smtplib's replies from the real test server.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from django.core.mail.backends.base import BaseEmailBackend

from mailer.engine import SendCounts, send_all
from mailer.models import Message, MessageLog
from mailer.outcome import RecipientResult, Reply, Verdict
from mailer.scrub import MASK, scrub

from .assertions import MailAssertions
from .samples import plain, token_of

API_KEY = "SG9xY2hKZ3RzVGVzdEtleQ42"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SIGNATURE = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
PASSWORD = "hunter2-correct-horse"


def http_error(url: str, status: int = 401, reason: str = "Unauthorized") -> requests.HTTPError:
    """The HTTPError requests raises for ``url`` (raise_for_status on a real Response)."""
    response = requests.Response()
    response.status_code, response.reason, response.url = status, reason, url
    try:
        response.raise_for_status()
    except requests.HTTPError as error:
        return error
    raise AssertionError("raise_for_status did not raise")


def aws_error() -> ClientError:
    """botocore's ClientError for a request whose signed Authorization header AWS quotes back."""
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/20240101/us-east-1/ses/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={AWS_SIGNATURE}"
    )
    message = (
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
        f"header. Authorization={authorization}"
    )
    response: Any = {"Error": {"Code": "IncompleteSignature", "Message": message}}
    return ClientError(response, "SendRawEmail")


SECRETS = (API_KEY, AWS_KEY_ID, AWS_SIGNATURE, PASSWORD, "tok3n-Value-99")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {text!r}"


@pytest.mark.no_database
class TestScrub:
    def test_a_requests_error_keeps_its_url_but_not_the_api_key(self) -> None:
        url = f"https://api.example.com/v3/mail/send?api_key={API_KEY}&page=2"
        text = scrub(str(http_error(url)))
        assert text == (
            "401 Client Error: Unauthorized for url: "
            f"https://api.example.com/v3/mail/send?api_key={MASK}&page=2"
        )

    def test_userinfo_and_every_unusual_query_value_go(self) -> None:
        url = f"https://mailer:{PASSWORD}@api.example.com/v1?k={API_KEY}&token=tok3n-Value-99#x=1"
        text = scrub(str(http_error(url, 403, "Forbidden")))
        assert_no_secret(text)
        assert f"https://{MASK}@api.example.com/v1?k={MASK}&token={MASK}#x=1" in text

    def test_a_botocore_error_loses_the_credential_and_signature(self) -> None:
        original = str(aws_error())
        assert AWS_KEY_ID in original and AWS_SIGNATURE in original  # what botocore says
        text = scrub(original)
        assert_no_secret(text)
        assert text.startswith(
            "An error occurred (IncompleteSignature) when calling the SendRawEmail operation: "
        )
        assert "SignedHeaders=host;x-amz-date" in text

    @pytest.mark.parametrize(
        "text, expected",
        [
            ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", f"Authorization: {MASK}"),
            ("Authorization: Basic bWFpbGVyOmh1bnRlcjI=", f"Authorization: {MASK}"),
            ("sent with bearer tok3n-Value-99 to the API", f"sent with bearer {MASK} to the API"),
            (
                f'{{"password": "{PASSWORD}", "user": "bob"}}',
                f'{{"password": "{MASK}", "user": "bob"}}',
            ),
            (f"{{'api_key': '{API_KEY}', 'retries': 3}}", f"{{'api_key': '{MASK}', 'retries': 3}}"),
            (f"apikey={API_KEY} secret: {PASSWORD}", f"apikey={MASK} secret: {MASK}"),
            (f"X-Api-Key={API_KEY}; key={API_KEY}", f"X-Api-Key={MASK}; key={MASK}"),
            (
                f"smtp://mailer:{PASSWORD}@smtp.example.com:587",
                f"smtp://{MASK}@smtp.example.com:587",
            ),
            (f"access key {AWS_KEY_ID} is not valid", f"access key {MASK} is not valid"),
        ],
    )
    def test_named_secrets_go_and_the_rest_stays(self, text: str, expected: str) -> None:
        assert scrub(text) == expected

    @pytest.mark.parametrize(
        "reply",
        [
            "250 2.0.0 Ok: queued as 4Bx",
            "250 2.0.0 Ok: queued as Q000042",
            "250 2.0.0 OK  1700000000 d2-20020a05600c4b0200b0041234si1234567wmq.12 - gsmtp",
            "451 4.3.0 Try again later",
            "421 4.7.0 mx.example.com Service not available, closing transmission channel",
            "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown",
            "535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6",
            "530 5.7.0 Must issue a STARTTLS command first",
            "552 5.3.4 Message size exceeds fixed limit",
            "550-5.7.1 [203.0.113.5] Our system has detected that this message is likely "
            "unsolicited mail. https://support.google.com/mail/?p=UnsolicitedMessageError",
            "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. "
            "For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653",
            "554 5.7.1 Service unavailable; Client host [203.0.113.5] blocked using "
            "zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.5",
            "Connection unexpectedly closed",
            "[Errno 111] Connection refused",
            "timed out connecting to smtp.example.com:587",
        ],
    )
    def test_ordinary_smtp_replies_and_errors_pass_unchanged(self, reply: str) -> None:
        assert scrub(reply) == reply

    def test_scrubbing_twice_changes_nothing_more(self) -> None:
        for text in (
            str(http_error(f"https://u:p@x.example/?api_key={API_KEY}")),
            str(aws_error()),
        ):
            assert scrub(scrub(text)) == scrub(text)

    def test_every_reply_is_scrubbed_where_it_is_made(self) -> None:
        reply = Reply(401, str(http_error(f"https://x.example/send?api_key={API_KEY}")))
        assert_no_secret(reply.text)
        assert reply.code == 401
        result = RecipientResult("a@example.com", Verdict.PERMANENT, Reply(None, f"key={API_KEY}"))
        assert_no_secret(str(result.as_json()))


class ProviderBackend(BaseEmailBackend):
    """An HTTP API backend that fails the way requests and botocore make it fail."""

    def send_messages(self, email_messages: Any) -> int:
        for message in email_messages:
            if "aws" in message.subject:
                raise aws_error()
            url = f"https://mailer:{PASSWORD}@api.example.com/v3/send?api_key={API_KEY}"
            raise http_error(url, 400, "Bad Request")
        return 0


def leaking_handler(connection: Any, message: Message, exc: BaseException) -> tuple[Any, str]:
    """A django-mailer style handler that writes the exception text itself, then raises."""
    message.defer(f"provider said: {exc}")
    MessageLog.objects.log(message, "3", log_message=f"custom: {exc}", smtp_reply=str(exc))
    raise RuntimeError(f"handler gave up on {exc}")


@pytest.mark.django_db(transaction=True)
class TestNothingSecretIsKept(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def assert_rows_and_logs_clean(self, caplog: Any) -> None:
        for row in Message.objects.all():
            assert_no_secret(row.last_reply)
            assert_no_secret(str(row.recipient_results))
        for log in MessageLog.objects.all():
            for text in (log.log_message, log.smtp_reply, log.exception, str(log.recipients)):
                assert_no_secret(text)
        logged = "\n".join(
            logging.Formatter("%(message)s").format(record) for record in caplog.records
        )
        assert_no_secret(logged)

    def test_provider_errors_are_stored_and_logged_without_their_secrets(
        self, settings: Any, legacy_style: None, caplog: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "tests.test_scrub.ProviderBackend"
        http, aws = plain(), plain()
        aws.subject = "aws " + aws.subject
        Message.objects.enqueue([http, aws])
        with caplog.at_level(logging.INFO, logger="mailer"):
            assert send_all() == SendCounts(deferred=2)
        self.assert_rows_and_logs_clean(caplog)
        replies = sorted(Message.objects.values_list("last_reply", flat=True))
        assert replies[0].startswith("An error occurred (IncompleteSignature)")
        assert replies[1].startswith("requests.exceptions.HTTPError: 400 Client Error")
        assert replies[1].endswith(f"https://{MASK}@api.example.com/v3/send?api_key={MASK}")

    def test_a_handlers_own_texts_and_its_traceback_are_scrubbed(
        self, settings: Any, legacy_style: None, caplog: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "tests.test_scrub.ProviderBackend"
        settings.MAILER_ERROR_HANDLER = "tests.test_scrub.leaking_handler"
        Message.objects.enqueue([plain()])
        with caplog.at_level(logging.INFO, logger="mailer"):
            send_all()
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert tracebacks, "the handler's exception is logged with its traceback"
        for record in tracebacks:
            assert "handler gave up on" in record.exc_text and MASK in record.exc_text
        self.assert_rows_and_logs_clean(caplog)
        log = MessageLog.objects.get(log_message__startswith="custom: ")
        assert f"api_key={MASK}" in log.log_message and f"api_key={MASK}" in log.smtp_reply

    def test_an_smtp_refusal_quoting_a_secret_is_scrubbed_and_ordinary_replies_kept(
        self, caplog: Any
    ) -> None:
        refused, accepted = plain(), plain()
        self.server.faults.refuse_data = {
            token_of(
                refused
            ).encode(): f"554 5.7.1 Rejected, see https://relay.example/?token={API_KEY}"
        }
        Message.objects.enqueue([refused, accepted])
        with caplog.at_level(logging.INFO, logger="mailer"):
            assert send_all() == SendCounts(sent=1, failed=1)
        self.assert_rows_and_logs_clean(caplog)
        self.assert_failed_with(refused, 554, f"https://relay.example/?token={MASK}")
        sent = MessageLog.objects.get(result="1")
        assert sent.smtp_reply.startswith("2.0.0 Ok: queued as Q")  # as the server said it
        assert sent.recipients[0][3] == sent.smtp_reply

"""What each reply or exception means: sent, retry later, or give up."""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

import pytest
from anymail.exceptions import AnymailRecipientsRefused

from mailer.delivery.classify import breaks_connection, classify, verdict_for_code
from mailer.exceptions import UndecodableMessage
from mailer.outcome import Reply, Verdict


@pytest.mark.parametrize(
    "code, verdict",
    [
        (250, Verdict.SENT),
        (251, Verdict.SENT),
        (421, Verdict.TRANSIENT),
        (450, Verdict.TRANSIENT),
        (451, Verdict.TRANSIENT),
        (452, Verdict.TRANSIENT),
        (550, Verdict.PERMANENT),
        (552, Verdict.PERMANENT),
        (553, Verdict.PERMANENT),
        (554, Verdict.PERMANENT),
        (None, Verdict.TRANSIENT),
    ],
)
def test_smtp_codes_are_read_by_their_first_digit(code: int | None, verdict: Verdict) -> None:
    assert verdict_for_code(code) is verdict


@pytest.mark.parametrize(
    "error, verdict, code",
    [
        (smtplib.SMTPDataError(451, b"later"), Verdict.TRANSIENT, 451),
        (smtplib.SMTPDataError(554, b"no"), Verdict.PERMANENT, 554),
        (smtplib.SMTPSenderRefused(553, b"bad sender", "a@b"), Verdict.PERMANENT, 553),
        (smtplib.SMTPServerDisconnected("gone"), Verdict.TRANSIENT, None),
        (smtplib.SMTPConnectError(554, b"go away"), Verdict.TRANSIENT, 554),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), Verdict.TRANSIENT, 535),
        (TimeoutError("timed out"), Verdict.TRANSIENT, None),
        (socket.gaierror(-2, "Name or service not known"), Verdict.TRANSIENT, None),
        (ConnectionRefusedError(111, "refused"), Verdict.TRANSIENT, None),
        (ssl.SSLError("bad handshake"), Verdict.TRANSIENT, None),
        (UndecodableMessage("corrupt"), Verdict.PERMANENT, None),
        (ValueError("Invalid address"), Verdict.PERMANENT, None),
        (UnicodeEncodeError("ascii", "é", 0, 1, "no"), Verdict.PERMANENT, None),
        (RuntimeError("something odd"), Verdict.TRANSIENT, None),
    ],
)
def test_exceptions_are_classified(
    error: BaseException, verdict: Verdict, code: int | None
) -> None:
    outcome = classify(error, ["to@example.com"])
    assert outcome.verdict is verdict
    assert outcome.reply.code == code
    assert outcome.recipients[0].address == "to@example.com"
    assert outcome.exception.endswith(type(error).__name__)


def test_a_connection_or_authentication_failure_is_never_blamed_on_the_message() -> None:
    """Codes that come with connection-level errors are about the server, not the mail."""
    assert classify(smtplib.SMTPAuthenticationError(535, b"no")).verdict is Verdict.TRANSIENT
    assert classify(smtplib.SMTPHeloError(501, b"bad helo")).verdict is Verdict.TRANSIENT


def test_recipients_refused_keep_each_recipients_reply() -> None:
    error = smtplib.SMTPRecipientsRefused(
        {"a@example.com": (550, b"5.1.1 unknown"), "b@example.com": (452, b"4.2.2 full")}
    )
    outcome = classify(error)
    assert outcome.verdict is Verdict.TRANSIENT  # one of them may still go through later
    replies = {r.address: (r.verdict, r.reply) for r in outcome.recipients}
    assert replies == {
        "a@example.com": (Verdict.PERMANENT, Reply(550, "5.1.1 unknown")),
        "b@example.com": (Verdict.TRANSIENT, Reply(452, "4.2.2 full")),
    }


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status_code = status


class ProviderAPIError(Exception):
    """Another provider library's error (not django-anymail's): an HTTP response hangs off it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.response = FakeResponse(status)


@pytest.mark.parametrize(
    "status, verdict",
    [
        (400, Verdict.PERMANENT),
        (422, Verdict.PERMANENT),
        (408, Verdict.TRANSIENT),
        (429, Verdict.TRANSIENT),
        (500, Verdict.TRANSIENT),
        (503, Verdict.TRANSIENT),
    ],
)
def test_other_esp_libraries_errors_are_read_through_their_http_status(
    status: int, verdict: Verdict
) -> None:
    outcome = classify(ProviderAPIError("provider says no", status))
    assert (outcome.verdict, outcome.reply.code) == (verdict, status)


def test_an_esp_that_refused_every_recipient_is_permanent() -> None:
    outcome = classify(AnymailRecipientsRefused(), ["a@example.com"])

    assert outcome.verdict is Verdict.PERMANENT
    assert [(r.address, r.refused) for r in outcome.recipients] == [("a@example.com", True)]
    assert outcome.reply.text == "All message recipients were rejected or invalid"


def quota_classifier(error: BaseException) -> Verdict | tuple[Verdict, Reply] | None:
    """A project's hook: its provider's quota error means 'try tomorrow'."""
    if "quota" in str(error):
        return Verdict.TRANSIENT, Reply(None, "daily quota reached")
    if "blocked" in str(error):
        return Verdict.PERMANENT
    return None


def test_a_classifier_hook_teaches_it_a_new_backends_errors(settings: Any) -> None:
    settings.MAILER_ERROR_CLASSIFIERS = ["tests.test_classify.quota_classifier"]
    quota = classify(ValueError("quota exceeded"))
    assert (quota.verdict, quota.reply.text) == (Verdict.TRANSIENT, "daily quota reached")
    assert classify(RuntimeError("account blocked")).verdict is Verdict.PERMANENT
    assert classify(ValueError("other")).verdict is Verdict.PERMANENT  # not its business


@pytest.mark.parametrize(
    "error, breaks",
    [
        (smtplib.SMTPServerDisconnected(), True),
        (smtplib.SMTPDataError(421, b"closing"), True),
        (smtplib.SMTPDataError(451, b"later"), False),
        (smtplib.SMTPRecipientsRefused({}), False),
        (TimeoutError(), True),
        (ValueError("bad address"), False),
    ],
)
def test_which_errors_leave_the_connection_unusable(error: BaseException, breaks: bool) -> None:
    assert breaks_connection(error) is breaks

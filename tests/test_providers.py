"""Delivering queued mail through an email service provider: django-anymail's real
Postmark, Mailgun and Amazon SES backends against the local provider APIs
(tests/providers/), in each configuration style, through ``send_all``.

What each answer does to the message (sent, deferred with a next attempt, or failed),
the reply kept (the HTTP status where the SMTP code goes, the provider's words and error
code where its text goes, per recipient), the provider's message ids, and how many times
the message reached the provider. Faults (hangs, dropped and refused connections) and
configuration errors: test_providers_faults.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from mailer.engine import SendCounts, send_all
from mailer.models import RESULT_FAILURE, RESULT_SUCCESS, Message, MessageLog, ProviderMessageId
from mailer.outcome import Outcome, RecipientResult, Reply, Verdict

from .admin_pages import LOG_LIST, rows, text
from .assertions import MailAssertions, find
from .providers import mailgun, postmark, ses
from .providers.config import Provider
from .providers.server import Reply as Answer
from .providers.status import ALICE, BOB, CAROL
from .samples import plain, token_of

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)


def queue(message: EmailMessage) -> EmailMessage:
    """Queue ``message`` the way a site does: Django's mail API, with DbBackend configured."""
    assert message.send() == 1
    return message


def log_of(message: EmailMessage) -> MessageLog:
    """The latest log row of ``message``."""
    rows = [log for log in MessageLog.objects.order_by("pk") if token_of(message) in _text(log)]
    assert rows, f"no log row for {token_of(message)}"
    return rows[-1]


def _text(log: MessageLog) -> str:
    row = Message.objects.filter(pk=log.queue_id).first()
    return (log.message_data or "") + (row.message_data if row is not None else "")


def recipients(log: MessageLog) -> dict[str, list[Any]]:
    return {entry[0]: entry[1:] for entry in log.recipients}


# Accepted: the provider's message id, per recipient, found again by lookup.


def test_an_accepted_message_keeps_the_provider_id_of_each_recipient(provider: Provider) -> None:
    message = queue(plain([ALICE, BOB]))

    assert send_all() == SendCounts(sent=1)

    request = provider.api.received_once(token_of(message))
    log = MessageLog.objects.get()
    ids = {r.address: r.provider_id for r in ProviderMessageId.objects.filter(log=log)}
    assert set(ids) == {ALICE, BOB} and len(set(ids.values())) == 1
    (provider_id,) = set(ids.values())
    assert provider_id == _id_in_answer(provider, request)
    assert log.result == RESULT_SUCCESS and log.smtp_code == 200
    assert log.smtp_reply == f"accepted {provider_id}"
    state = "sent" if provider.name == "postmark" else "queued"
    assert recipients(log)[ALICE] == ["sent", 200, f"{state} {provider_id}", provider_id]
    assert list(MessageLog.objects.by_provider_id(provider_id)) == [log]
    assert log.refused == 0 and log.log_message == ""


def _id_in_answer(provider: Provider, request: Any) -> str:
    """The id as the provider gave it, read back from the server's record of the answer."""
    log = MessageLog.objects.get()
    (entry,) = ProviderMessageId.objects.filter(log=log, address=ALICE)
    if provider.name == "mailgun":
        assert entry.provider_id.startswith("<") and entry.provider_id.endswith("@example.com>")
    elif provider.name == "ses":
        assert entry.provider_id.startswith("0100")
    else:
        assert len(entry.provider_id) == 36  # Postmark's MessageID, a UUID
    return entry.provider_id


def test_postmark_delayed_delivery_is_sent_and_queued_at_the_provider(
    postmark_provider: Provider,
) -> None:
    postmark_provider.api.queue(postmark.delayed())
    message = queue(plain([ALICE]))

    assert send_all() == SendCounts(sent=1)

    log = log_of(message)
    verdict, code, reply, provider_id = recipients(log)[ALICE]
    assert (verdict, code, reply) == ("sent", 200, f"queued {provider_id}")


def test_a_postmark_batch_gives_each_recipient_its_own_id_and_each_finds_the_log(
    postmark_provider: Provider,
) -> None:
    message = plain([ALICE, BOB])
    message.merge_metadata = {ALICE: {"n": "1"}, BOB: {"n": "2"}}  # type: ignore[attr-defined]
    queue(message)

    assert send_all() == SendCounts(sent=1)

    assert postmark_provider.api.received_once(token_of(message)).path == "/email/batch"
    log = log_of(message)
    ids = dict(ProviderMessageId.objects.filter(log=log).values_list("address", "provider_id"))
    assert len(set(ids.values())) == 2
    for address, provider_id in ids.items():
        assert list(MessageLog.objects.by_provider_id(provider_id)) == [log]
        assert recipients(log)[address][3] == provider_id


def test_a_message_still_queued_is_found_by_the_id_a_provider_gave_one_recipient() -> None:
    """Sent to one recipient, to be tried again for another: the row stays in the queue,
    and ``Message.objects.by_provider_id`` finds it."""
    Message.objects.enqueue([plain([ALICE, BOB])])
    (row,) = Message.objects.claim("test-worker", 1, lease=60)
    outcome = Outcome(
        Verdict.TRANSIENT,
        Reply(429, "Rate limit exceeded."),
        "",
        [
            RecipientResult(ALICE, Verdict.SENT, Reply(200, "sent id-1"), provider_id="id-1"),
            RecipientResult(BOB, Verdict.TRANSIENT, Reply(429, "Rate limit exceeded.")),
        ],
    )

    Message.objects.record([(row, outcome)], worker="test-worker")

    assert list(Message.objects.by_provider_id("id-1")) == [row]
    assert list(Message.objects.by_provider_id("id-2")) == []
    assert find(token_of_row(row)).recipient_results[ALICE] == [
        "sent",
        200,
        "sent id-1",
        "id-1",
    ]


def token_of_row(row: Message) -> str:
    email = row.email
    assert email is not None
    return token_of(email)


def test_purging_the_log_takes_the_provider_ids_with_it(postmark_provider: Provider) -> None:
    queue(plain([ALICE]))
    send_all()
    MessageLog.objects.update(
        when_attempted=MessageLog.objects.get().when_attempted.replace(year=2000)
    )

    assert MessageLog.objects.purge_old_entries(days=1) == 1

    assert not ProviderMessageId.objects.exists()


# Refused, per recipient: as SMTP's per-recipient replies are.

INACTIVE = "You tried to send to recipient(s) that have been marked as inactive."


class TestPerRecipient(MailAssertions):
    def test_postmark_inactive_recipient_among_active_ones_is_sent_with_a_refusal(
        self, postmark_provider: Provider
    ) -> None:
        postmark_provider.api.queue(postmark.inactive_among(BOB))
        message = queue(plain([ALICE, BOB]))

        assert send_all() == SendCounts(sent=1)

        log = log_of(message)
        assert log.result == RESULT_SUCCESS and log.refused == 1
        refusal = recipients(log)[BOB]
        assert refusal[:2] == ["permanent", 200]
        assert refusal[2].startswith(
            "rejected: Message OK, but will not deliver to these inactive addresses: "
            "bob@example.com."
        )
        assert log.log_message == f"sent to 1, refused 1: {BOB}: 200 {refusal[2]}"
        assert recipients(log)[ALICE][0] == "sent"
        assert list(ProviderMessageId.objects.values_list("address", flat=True)) == [ALICE]
        postmark_provider.api.received_once(token_of(message))

    def test_postmark_every_recipient_inactive_fails_with_postmarks_words(
        self, postmark_provider: Provider
    ) -> None:
        postmark_provider.api.queue(postmark.inactive_recipient(ALICE, BOB))
        message = queue(plain([ALICE, BOB]))

        assert send_all() == SendCounts(failed=1)

        row = self.assert_failed_with(message, 422, INACTIVE)
        assert "(Postmark error 406)" in row.last_reply
        log = log_of(message)
        assert log.exception == "anymail.exceptions.AnymailRecipientsRefused"
        assert log.refused == 2
        assert all(entry[:2] == ["permanent", 422] for entry in recipients(log).values())
        assert recipients(log)[ALICE][2].startswith(f"rejected: {INACTIVE}")
        postmark_provider.api.received_once(token_of(message))

    def test_postmark_the_only_recipient_invalid_fails(self, postmark_provider: Provider) -> None:
        postmark_provider.api.queue(postmark.invalid_to(ALICE))
        message = queue(plain([ALICE]))

        assert send_all() == SendCounts(failed=1)

        self.assert_failed_with(
            message, 422, "invalid: Invalid 'To' address: 'alice@example.com'. (Postmark error 300)"
        )
        postmark_provider.api.received_once(token_of(message))

    def test_postmark_one_invalid_recipient_among_others_is_failed_for_it_and_retried_for_them(
        self, postmark_provider: Provider
    ) -> None:
        """Postmark sent nothing (422), although anymail raises nothing: the invalid
        recipient is refused for good, the others are tried again, alone."""
        postmark_provider.api.queue(postmark.invalid_to(BOB))
        message = queue(plain([ALICE, BOB]))

        assert send_all() == SendCounts(deferred=1)

        row = self.assert_deferred_with(message, 422, "not sent: the provider refused the request")
        assert row.recipient_results[BOB][:2] == ["permanent", 422]
        assert ALICE not in row.recipient_results
        first = log_of(message)
        assert first.result == RESULT_FAILURE and first.refused == 1
        Message.objects.update(due_at=row.when_added)

        assert send_all() == SendCounts(sent=1)

        first_request, second_request = postmark_provider.api.requests_for(token_of(message))
        assert sorted(first_request.recipients) == [ALICE, BOB]
        assert second_request.recipients == [ALICE]

    def test_a_postmark_batch_with_an_inactive_recipient_is_sent_to_the_others(
        self, postmark_provider: Provider
    ) -> None:
        postmark_provider.api.queue(postmark.batch_inactive(BOB))
        message = plain([ALICE, BOB, CAROL])
        message.merge_metadata = {ALICE: {}, BOB: {}, CAROL: {}}  # type: ignore[attr-defined]
        queue(message)

        assert send_all() == SendCounts(sent=1)

        log = log_of(message)
        assert log.refused == 1 and log.log_message.startswith(f"sent to 2, refused 1: {BOB}: ")
        assert sorted(ProviderMessageId.objects.values_list("address", flat=True)) == [
            ALICE,
            CAROL,
        ]


# Refused as a whole: an HTTP error answer, by status.

# (provider, answer, the message's state after it, HTTP status, the provider's words kept)
ERROR_ANSWERS: list[tuple[str, Answer, str, int, str]] = [
    (
        "postmark",
        postmark.invalid_from(),
        "failed",
        422,
        "Invalid 'From' address: 'sender@example.com' is not a verified sender signature. "
        "(Postmark error 300)",
    ),
    (
        "postmark",
        postmark.sender_signature_not_found(),
        "failed",
        422,
        "is not a Sender Signature on your account. Please add and confirm this address in "
        "order to be able to use it in the 'From' field of your messages. (Postmark error 400)",
    ),
    (
        "postmark",
        postmark.forbidden_attachment(),
        "failed",
        422,
        "Forbidden attachment type: run.exe (Postmark error 411)",
    ),
    (
        "postmark",
        postmark.account_pending(),
        "failed",
        422,
        "all recipients must share the same domain as the 'From' address. (Postmark error 412)",
    ),
    ("postmark", postmark.rate_limited(), "deferred", 429, "Rate limit exceeded."),
    ("postmark", postmark.server_error(), "deferred", 500, "Internal Server Error"),
    (
        "postmark",
        postmark.maintenance(),
        "deferred",
        503,
        "The Postmark API is down for maintenance. (Postmark error 100)",
    ),
    (
        "mailgun",
        mailgun.invalid_address(),
        "failed",
        400,
        "'to' parameter is not a valid address. please check documentation",
    ),
    ("mailgun", mailgun.domain_not_found(), "failed", 404, "Domain not found: example.com"),
    ("mailgun", mailgun.rate_limited(), "deferred", 429, "Too many requests"),
    ("mailgun", mailgun.server_error(), "deferred", 500, "Internal Server Error"),
    (
        "ses",
        ses.throttled(),
        "deferred",
        429,
        "Maximum sending rate exceeded. (Amazon SES error TooManyRequestsException)",
    ),
    ("ses", ses.daily_quota_exceeded(), "deferred", 429, "Daily message quota exceeded."),
    (
        "ses",
        ses.not_verified(ALICE),
        "failed",
        400,
        "Email address is not verified. The following identities failed the check in region "
        "US-EAST-1: alice@example.com (Amazon SES error MessageRejected)",
    ),
    (
        "ses",
        ses.bad_request(),
        "failed",
        400,
        "Illegal address (Amazon SES error BadRequestException)",
    ),
    ("ses", ses.internal_failure(), "deferred", 500, "unknown error, exception or failure."),
    ("ses", ses.service_unavailable(), "deferred", 503, "temporary failure of the server."),
]


@pytest.mark.parametrize(
    ("name", "answer", "state", "status", "words"),
    ERROR_ANSWERS,
    ids=[f"{name}-{answer.name}-{status}" for name, answer, _, status, _ in ERROR_ANSWERS],
)
def test_an_error_answer_is_kept_with_its_status_and_the_providers_words(
    request: pytest.FixtureRequest,
    provider_style: str,
    name: str,
    answer: Answer,
    state: str,
    status: int,
    words: str,
) -> None:
    provider: Provider = request.getfixturevalue(f"{name}_provider")
    provider.api.queue(answer)
    message = queue(plain([ALICE, BOB]))

    counts = send_all()

    assert counts == (SendCounts(failed=1) if state == "failed" else SendCounts(deferred=1))
    row = find(token_of(message))
    assert row.status == state and row.last_code == status
    assert words in row.last_reply and len(row.last_reply) < 600
    if state == "deferred":
        assert row.due_at is not None
    log = log_of(message)
    assert (log.result, log.smtp_code) == (RESULT_FAILURE, status)
    assert words in log.smtp_reply and log.refused == 0
    assert {entry[1] for entry in recipients(log).values()} == {status}
    assert log.exception.startswith("anymail.exceptions.Anymail")
    provider.api.received_once(token_of(message))  # never again within the run


def test_the_providers_json_is_not_kept_whole(postmark_provider: Provider) -> None:
    """anymail's own text carries the whole body as indented JSON; only the words are kept."""
    postmark_provider.api.queue(postmark.invalid_from())
    message = queue(plain([ALICE]))

    send_all()

    row = find(token_of(message))
    assert "{" not in row.last_reply and "\n" not in row.last_reply


@pytest.mark.not_postgres  # PostgreSQL's insert always returns the ids (and Django counts on it)
def test_without_ids_returned_by_the_insert_the_provider_ids_find_their_log_row(
    postmark_provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MySQL returns no ids from a multi-row INSERT: each log row's id is read back."""
    from django.db import connections

    # Results are recorded from another thread, on its own connection: every one is told.
    features = type(connections["default"].features)
    monkeypatch.setattr(features, "can_return_rows_from_bulk_insert", False)
    first, second = queue(plain([ALICE])), queue(plain([BOB]))

    assert send_all() == SendCounts(sent=2)

    for message, address in ((first, ALICE), (second, BOB)):
        log = log_of(message)
        (entry,) = ProviderMessageId.objects.filter(address=address)
        assert entry.log_id == log.pk
        assert list(MessageLog.objects.by_provider_id(entry.provider_id)) == [log]


def test_the_admin_shows_each_recipients_provider_id_and_finds_the_log_by_it(
    postmark_provider: Provider, admin_client: Client
) -> None:
    postmark_provider.api.queue(postmark.inactive_among(BOB))
    queue(plain([ALICE, BOB]))
    send_all()
    log = MessageLog.objects.get()
    (entry,) = ProviderMessageId.objects.all()

    found = rows(admin_client.get(LOG_LIST, {"q": entry.provider_id}))
    page = text(admin_client.get(f"{LOG_LIST}{log.pk}/change/"))

    assert found == [str(log.pk)]
    assert rows(admin_client.get(LOG_LIST, {"q": "no-such-provider-id"})) == []
    assert f'<td class="mailer-provider-id">{entry.provider_id}</td>' in page
    assert '<th scope="col">Provider\'s message id</th>' in page

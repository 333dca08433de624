"""Tracking webhooks: each provider's payload, posted to anymail's own URL with Django's
test client, fires anymail's ``tracking`` signal with the recipient, the event type and
the provider's message id of a message really sent through the local provider API.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .providers.config import Provider
from .providers.status import ALICE
from .providers.webhooks import KINDS, Payload, payload, postmark_bounce
from .samples import plain

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.no_database


@pytest.fixture(autouse=True)
def no_feedback_loop(settings: Any) -> None:
    """These tests see anymail alone, with no database: the feedback loop, which would
    list addresses, is tests/test_feedback.py's."""
    settings.MAILER_SUPPRESS_EVENTS = []


ESP_NAMES = {"postmark": "Postmark", "mailgun": "Mailgun", "ses": "Amazon SES"}
# (provider, kind) -> anymail's event_type and reject_reason.
TRACKED = {
    ("postmark", "hard_bounce"): ("bounced", "bounced"),
    ("postmark", "soft_bounce"): ("bounced", "bounced"),  # Postmark's SoftBounce type
    ("postmark", "complaint"): ("complained", "spam"),
    ("postmark", "unsubscribe"): ("unsubscribed", "unsubscribed"),
    ("postmark", "delivered"): ("delivered", None),
    ("mailgun", "hard_bounce"): ("bounced", "bounced"),
    ("mailgun", "soft_bounce"): ("deferred", "other"),
    ("mailgun", "complaint"): ("complained", None),
    ("mailgun", "unsubscribe"): ("unsubscribed", None),
    ("mailgun", "delivered"): ("delivered", None),
    ("ses", "hard_bounce"): ("bounced", "bounced"),
    ("ses", "soft_bounce"): ("bounced", "bounced"),  # a Transient bounce
    ("ses", "complaint"): ("complained", "spam"),
    ("ses", "unsubscribe"): ("unknown", None),  # anymail 15.2 does not know "Subscription"
    ("ses", "delivered"): ("delivered", None),
}


def esp_event_of(posted: Payload) -> Any:
    """What anymail passes on as esp_event: the parsed post, or for SNS the SES event."""
    if posted.provider == "ses":
        return json.loads(posted.body["Message"])
    return posted.body


@pytest.mark.parametrize("kind", KINDS)
def test_webhook_payload_fires_tracking_with_the_send_message_id(
    provider: Provider, webhooks: Any, kind: str
) -> None:
    sent = provider.send(plain([ALICE]))
    posted = payload(provider.name, kind, ALICE, sent.anymail_status.message_id)

    result = webhooks.post(posted)

    assert result.response.status_code == 200
    [event] = result.events
    assert (event.event_type, event.reject_reason) == TRACKED[(provider.name, kind)]
    assert event.recipient == ALICE
    assert event.message_id == sent.anymail_status.message_id
    assert event.esp_event == esp_event_of(posted)
    assert result.esp_names == [ESP_NAMES[provider.name]]
    assert result.challenged is (provider.name == "ses")


def test_ses_soft_bounce_is_told_apart_by_its_description(
    ses_provider: Provider, webhooks: Any
) -> None:
    posted = payload("ses", "soft_bounce", ALICE, "0100abc-def-000000")

    [event] = webhooks.post(posted).events

    assert event.description == "Transient: MailboxFull"
    assert event.mta_response == "smtp; 452 4.2.2 mailbox full"


def test_postmark_transient_bounce_is_deferred(postmark_provider: Provider, webhooks: Any) -> None:
    [event] = webhooks.post(postmark_bounce(ALICE, "b7bc2f4a", "Transient")).events

    assert (event.event_type, event.reject_reason) == ("deferred", None)
    assert event.esp_event["Type"] == "Transient"


def test_webhook_with_a_wrong_secret_is_refused(provider: Provider, webhooks: Any) -> None:
    posted = payload(provider.name, "hard_bounce", ALICE, "some-id")

    result = webhooks.post(posted, secret="anymail-hook:wrong")

    assert result.response.status_code == 400
    assert result.events == []


def test_mailgun_webhook_with_a_bad_signature_is_refused(
    mailgun_provider: Provider, webhooks: Any
) -> None:
    posted = payload("mailgun", "hard_bounce", ALICE, "<id@example.com>")
    posted.body["signature"]["signature"] = "0" * 64

    result = webhooks.post(posted)

    assert result.response.status_code == 400
    assert result.events == []


def test_ses_webhook_whose_sns_headers_do_not_match_its_body_is_refused(
    ses_provider: Provider, webhooks: Any
) -> None:
    posted = payload("ses", "hard_bounce", ALICE, "0100abc-def-000000")
    posted.headers["x-amz-sns-message-id"] = "another-id"

    result = webhooks.post(posted)

    assert result.challenged and result.response.status_code == 400
    assert result.events == []


def test_ses_unsubscribe_is_an_unknown_event_to_anymail(
    ses_provider: Provider, webhooks: Any
) -> None:
    posted = payload("ses", "unsubscribe", ALICE, "0100abc-def-000000")

    [event] = webhooks.post(posted).events

    assert event.event_type == "unknown"
    assert event.description == "Unknown SES eventType 'Subscription'"
    assert event.recipient == ALICE  # from mail.destination
    assert event.esp_event["subscription"]["newTopicPreferences"]["unsubscribeAll"] is True

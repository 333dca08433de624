"""The feedback loop: what a provider's tracking webhook or an SMTP server reports about
delivered mail puts the address on the don't-send list, with why, when and the message.

Mail is delivered through anymail's real backends at the local provider APIs, and each
provider's own webhook payloads are posted to anymail's own URLs with Django's test client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anymail.signals import AnymailTrackingEvent, tracking
from django.core import mail as django_mail

import mailer
from mailer.engine import send_all
from mailer.models import RESULT_DONT_SEND, DontSendEntry, Message, MessageLog

from .providers.config import Provider
from .providers.status import ALICE, BOB
from .providers.webhooks import Payload, payload, postmark_bounce

pytest_plugins = ["tests.providers.fixtures"]
pytestmark = pytest.mark.django_db(transaction=True)

ESP_NAMES = {"postmark": "Postmark", "mailgun": "Mailgun", "ses": "Amazon SES"}
REASONS = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}


class Sent:
    """A message queued with ``mailer.send_mail`` and delivered through the provider."""

    def __init__(self, *recipients: str) -> None:
        before = set(MessageLog.objects.values_list("pk", flat=True))
        mailer.send_mail("Hello", "Hello there", "sender@example.com", list(recipients))
        assert sum(send_all()) == 1  # sent, or (refused in part for now) deferred
        [self.log] = MessageLog.objects.exclude(pk__in=before)
        self.queue_id = self.log.queue_id
        self.message_id = self.log.message_id
        # The provider's id for the message (none over SMTP), as its webhooks will name it.
        ids = set(self.log.provider_ids.values_list("provider_id", flat=True))
        self.provider_id = ids.pop() if ids else ""
        assert not ids


def listed(address: str = ALICE) -> list[DontSendEntry]:
    return list(DontSendEntry.objects.filter(to_address=address).order_by("pk"))


def provider_recipients(provider: Provider) -> list[str]:
    """Who the provider was last asked to deliver to."""
    return list(provider.api.requests[-1].recipients)


def queue_to(*recipients: str) -> None:
    mailer.send_mail("Again", "Hello again", "sender@example.com", list(recipients))


class TestTrackingWebhooks:
    @pytest.mark.parametrize("kind", sorted(REASONS))
    def test_a_hard_bounce_a_complaint_or_an_unsubscribe_lists_the_recipient_with_why(
        self, provider: Provider, webhooks: Any, kind: str
    ) -> None:
        sent = Sent(ALICE)

        response = webhooks.post(payload(provider.name, kind, ALICE, sent.provider_id)).response

        assert response.status_code == 200
        [entry] = listed()
        assert entry.reason == REASONS[kind]
        assert entry.esp_name == ESP_NAMES[provider.name]
        assert entry.provider_message_id == sent.provider_id
        assert (entry.queue_id, entry.message_id) == (sent.queue_id, sent.message_id)
        assert entry.reported_at is not None and entry.lifted_at is None
        if kind == "hard_bounce":
            assert "5.1.1" in entry.description  # the receiving server's words, kept

    def test_after_a_hard_bounce_no_mail_is_queued_or_sent_to_the_address(
        self, provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        webhooks.post(payload(provider.name, "hard_bounce", ALICE, sent.provider_id))

        queue_to(ALICE)
        assert not Message.objects.exists()
        assert MessageLog.objects.filter(result=RESULT_DONT_SEND).count() == 1

        django_mail.send_mail("Both", "Hello both", "sender@example.com", [ALICE, BOB])
        assert send_all().sent == 1
        assert provider_recipients(provider) == [BOB]

    def test_a_soft_bounce_never_lists_the_recipient(
        self, provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)

        response = webhooks.post(payload(provider.name, "soft_bounce", ALICE, sent.provider_id))

        assert response.response.status_code == 200
        assert listed() == []
        queue_to(ALICE)
        assert Message.objects.count() == 1

    def test_a_delivery_report_changes_nothing(self, provider: Provider, webhooks: Any) -> None:
        sent = Sent(ALICE)
        webhooks.post(payload(provider.name, "delivered", ALICE, sent.provider_id))
        assert listed() == []

    def test_a_postmark_transient_bounce_is_a_delay(
        self, postmark_provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        webhooks.post(postmark_bounce(ALICE, sent.provider_id, "Transient"))
        assert listed() == []

    def test_an_ses_unsubscribe_from_some_topics_only_keeps_the_address(
        self, ses_provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        posted = payload("ses", "unsubscribe", ALICE, sent.provider_id)
        event = json.loads(posted.body["Message"])
        event["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
        posted.body["Message"] = json.dumps(event)

        webhooks.post(posted)

        assert listed() == []

    def test_only_the_events_of_mailer_suppress_events_list_an_address(
        self, provider: Provider, webhooks: Any, settings: Any
    ) -> None:
        settings.MAILER_SUPPRESS_EVENTS = ["complained"]
        sent = Sent(ALICE)

        webhooks.post(payload(provider.name, "hard_bounce", ALICE, sent.provider_id))
        webhooks.post(payload(provider.name, "unsubscribe", ALICE, sent.provider_id))
        assert listed() == []

        webhooks.post(payload(provider.name, "complaint", ALICE, sent.provider_id))
        assert [e.reason for e in listed()] == ["complained"]

    def test_an_address_reported_twice_is_listed_once(
        self, postmark_provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        webhooks.post(payload("postmark", "hard_bounce", ALICE, sent.provider_id))
        webhooks.post(payload("postmark", "complaint", ALICE, sent.provider_id))
        assert [e.reason for e in listed()] == ["bounced"]

    def test_a_report_about_mail_the_queue_never_sent_still_lists_the_address(
        self, mailgun_provider: Provider, webhooks: Any
    ) -> None:
        webhooks.post(payload("mailgun", "complaint", ALICE, "<elsewhere@mg.example.com>"))

        [entry] = listed()
        assert entry.provider_message_id == "<elsewhere@mg.example.com>"
        assert (entry.queue_id, entry.message_id) == (None, "")

    def test_a_report_about_something_that_is_no_address_lists_nothing(
        self, postmark_provider: Provider, webhooks: Any
    ) -> None:
        too_long = "x" * 250 + "@example.com"
        for recipient in ("undisclosed-recipients", too_long):
            response = webhooks.post(payload("postmark", "hard_bounce", recipient, "b7bc2f4a"))
            assert response.response.status_code == 200
        assert not DontSendEntry.objects.exists()

    def test_a_lifted_entry_lets_mail_go_again_and_stays_on_record(
        self, ses_provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        webhooks.post(payload("ses", "hard_bounce", ALICE, sent.provider_id))

        assert DontSendEntry.objects.filter(to_address=ALICE).lift(by="operator") == 1

        [entry] = listed()
        assert entry.lifted_by == "operator" and entry.lifted_at is not None
        assert not DontSendEntry.objects.has_address(ALICE)

        again = Sent(ALICE)  # queued and delivered to the address again
        assert provider_recipients(ses_provider) == [ALICE]
        webhooks.post(payload("ses", "hard_bounce", ALICE, again.provider_id))
        assert [e.lifted_at is None for e in listed()] == [False, True]
        assert DontSendEntry.objects.has_address(ALICE)

    def test_a_webhook_anymail_refuses_lists_nothing(
        self, provider: Provider, webhooks: Any
    ) -> None:
        sent = Sent(ALICE)
        posted: Payload = payload(provider.name, "hard_bounce", ALICE, sent.provider_id)

        assert webhooks.post(posted, secret="anymail-hook:wrong").response.status_code == 400
        assert listed() == []


class TestSmtpCodes:
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp
        smtp.faults.refuse_rcpt = {
            "ghost@example.com": "550 5.1.1 No such user",
            "odd@example.com": "553 5.1.3 Bad address syntax",
            "full@example.com": "452 4.2.2 Mailbox full",
        }

    def send(self) -> Sent:
        return Sent(ALICE, "ghost@example.com", "odd@example.com", "full@example.com")

    def test_by_default_an_smtp_refusal_lists_nobody(self) -> None:
        self.send()
        assert not DontSendEntry.objects.exists()

    def test_a_listed_permanent_reply_lists_the_recipient_as_a_hard_bounce(
        self, settings: Any
    ) -> None:
        settings.MAILER_SUPPRESS_SMTP_CODES = ["550 5.1.1"]
        sent = self.send()

        [entry] = DontSendEntry.objects.all()
        assert entry.to_address == "ghost@example.com"
        assert (entry.reason, entry.esp_name) == ("bounced", "SMTP")
        assert entry.description == "550 5.1.1 No such user"
        assert (entry.queue_id, entry.message_id) == (sent.queue_id, sent.message_id)

        queue_to("ghost@example.com")
        assert not Message.objects.filter(status="queued").exclude(pk=sent.queue_id).exists()

    def test_a_basic_code_alone_matches_any_enhanced_status(self, settings: Any) -> None:
        settings.MAILER_SUPPRESS_SMTP_CODES = [550, "553"]
        self.send()
        listed_now = sorted(DontSendEntry.objects.values_list("to_address", flat=True))
        assert listed_now == ["ghost@example.com", "odd@example.com"]

    def test_another_enhanced_status_does_not_match(self, settings: Any) -> None:
        settings.MAILER_SUPPRESS_SMTP_CODES = ["550 5.7.1"]
        self.send()
        assert not DontSendEntry.objects.exists()


class TestOtherProviders:
    """Providers without a local API here: anymail's event as its webhook would make it."""

    @pytest.mark.parametrize(
        ("esp_name", "esp_event", "mta_response", "listed_now"),
        [
            ("Brevo", {"event": "hard_bounce"}, "550 5.1.1 unknown", True),
            ("Brevo", {"event": "soft_bounce"}, "", False),
            ("Mandrill", {"event": "soft_bounce"}, "", False),
            ("MailerSend", {"type": "activity.soft_bounced"}, "", False),
            ("SendGrid", {"event": "bounce"}, "550 5.1.1 The email account does not exist", True),
            ("SendGrid", {"event": "bounce"}, "452 4.2.2 Mailbox full", False),
        ],
    )
    def test_a_bounce_lists_the_address_unless_the_provider_says_it_was_soft(
        self, esp_name: str, esp_event: dict[str, str], mta_response: str, listed_now: bool
    ) -> None:
        event = AnymailTrackingEvent(
            event_type="bounced",
            recipient=ALICE,
            message_id="some-id",
            esp_event=esp_event,
            mta_response=mta_response,
        )

        tracking.send(sender=object, event=event, esp_name=esp_name)

        assert DontSendEntry.objects.has_address(ALICE) is listed_now

"""Tracking webhook payloads as Postmark, Mailgun and Amazon SES (through SNS) post them,
and a helper that posts one to anymail's own webhook URL with Django's test client.

Each builder takes the recipient and the provider's message id (what the send answer
gave: ``anymail_status.message_id``) and returns a ``Payload``. ``KINDS`` names the
five events every provider has a builder for: hard_bounce, soft_bounce, complaint,
unsubscribe, delivered.

What anymail needs to accept a post:
* every provider: HTTP basic auth with ``ANYMAIL["WEBHOOK_SECRET"]`` ("user:password").
* Mailgun: also ``signature.signature`` = HMAC-SHA256 of ``timestamp + token`` keyed
  with ``ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"]``; the builders sign with the test key.
* Amazon SES: the SNS headers ``x-amz-sns-message-type`` and ``x-amz-sns-message-id``
  must equal the body's ``Type`` and ``MessageId``; a post without basic auth gets a
  401 challenge first (SNS only sends credentials after one, and so does ``post``).
  anymail 15.2 does not check the SNS signature (its code says "Future: Verify SNS
  message signature"), so the ``Signature`` field here is shaped like SNS's but signs
  nothing, and the basic-auth secret is what protects the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from . import mailgun

WEBHOOK_SECRET = "anymail-hook:correct-horse-battery"
KINDS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe", "delivered")
URL_NAMES = {
    "postmark": "anymail:postmark_tracking_webhook",
    "mailgun": "anymail:mailgun_tracking_webhook",
    "ses": "anymail:amazon_ses_tracking_webhook",
}
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"


@dataclass(frozen=True)
class Payload:
    provider: str
    kind: str
    body: dict[str, Any]
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class WebhookResult:
    response: HttpResponse
    events: list[AnymailTrackingEvent]  # what anymail's tracking signal carried
    esp_names: list[str]
    challenged: bool = False  # a first post without credentials got SNS's 401 challenge


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# Postmark: https://postmarkapp.com/developer/webhooks/bounce-webhook,
# .../spam-complaint-webhook, .../subscription-change-webhook, .../delivery-webhook;
# bounce types and codes: https://postmarkapp.com/developer/api/bounce-api#bounce-types

_POSTMARK_BOUNCES = {
    "HardBounce": (
        1,
        "Hard bounce",
        "The server was unable to deliver your email (ex: unknown user, mailbox not found).",
    ),
    "Transient": (
        2,
        "Message delayed",
        "The server could not temporarily deliver your message "
        "(ex: Message is delayed due to network troubles).",
    ),
    "SoftBounce": (4096, "Soft bounce", "Unable to temporarily deliver this email."),
    "SpamComplaint": (
        512,
        "Spam complaint",
        "The subscriber explicitly marked this message as spam.",
    ),
}


def postmark_bounce(recipient: str, message_id: str, bounce_type: str = "HardBounce") -> Payload:
    """A Bounce record; ``bounce_type`` HardBounce, SoftBounce or Transient (delayed)."""
    code, name, description = _POSTMARK_BOUNCES[bounce_type]
    record_type = "SpamComplaint" if bounce_type == "SpamComplaint" else "Bounce"
    body = {
        "RecordType": record_type,
        "MessageStream": "outbound",
        "ID": secrets.randbelow(10**12),
        "Type": bounce_type,
        "TypeCode": code,
        "Name": name,
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 1234,
        "Description": description,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist."
        if bounce_type == "HardBounce"
        else "smtp;452 4.2.2 The email account that you tried to reach is over quota.",
        "Email": recipient,
        "From": "sender@example.com",
        "BouncedAt": _now(),
        "DumpAvailable": True,
        "Inactive": bounce_type in ("HardBounce", "SpamComplaint"),
        "CanActivate": True,
        "Subject": "Hello",
    }
    kind = {"HardBounce": "hard_bounce", "SpamComplaint": "complaint"}.get(
        bounce_type, "soft_bounce"
    )
    return Payload("postmark", kind, body)


def postmark_complaint(recipient: str, message_id: str) -> Payload:
    """A SpamComplaint record (shaped as a bounce, Type SpamComplaint)."""
    return postmark_bounce(recipient, message_id, "SpamComplaint")


def postmark_unsubscribe(recipient: str, message_id: str) -> Payload:
    """A SubscriptionChange record: the recipient unsubscribed (suppression by the recipient)."""
    body = {
        "RecordType": "SubscriptionChange",
        "MessageID": message_id,
        "ServerID": 1234,
        "MessageStream": "outbound",
        "ChangedAt": _now(),
        "Recipient": recipient,
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "Tag": "",
        "Metadata": {},
    }
    return Payload("postmark", "unsubscribe", body)


def postmark_delivered(recipient: str, message_id: str) -> Payload:
    """A Delivery record: the receiving server accepted the message."""
    body = {
        "RecordType": "Delivery",
        "ServerID": 1234,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": recipient,
        "Tag": "",
        "DeliveredAt": _now(),
        "Details": "smtp;250 2.0.0 OK",
        "Metadata": {},
    }
    return Payload("postmark", "delivered", body)


# Mailgun: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payload
# (signature block and event-data), events: .../user-manual/events/event-types; signing:
# .../user-manual/webhooks/securing-webhooks


def mailgun_signature(key: str = mailgun.WEBHOOK_SIGNING_KEY) -> dict[str, str]:
    """A signature block: HMAC-SHA256 over timestamp + token with the webhook signing key."""
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def _mailgun(kind: str, recipient: str, message_id: str, **event: Any) -> Payload:
    domain = recipient.rpartition("@")[2]
    event_data = {
        "id": secrets.token_urlsafe(16),
        "timestamp": time.time(),
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": domain,
        "tags": [],
        "user-variables": {},
        "envelope": {"sender": "sender@example.com", "transport": "smtp", "targets": recipient},
        "message": {
            "headers": {
                "to": recipient,
                "message-id": message_id.strip("<>"),  # Mailgun leaves out the <> here
                "from": "sender@example.com",
                "subject": "Hello",
            },
            "attachments": [],
            "size": 512,
        },
        **event,
    }
    return Payload("mailgun", kind, {"signature": mailgun_signature(), "event-data": event_data})


def _delivery_status(code: int, message: str) -> dict[str, Any]:
    return {
        "attempt-no": 1,
        "code": code,
        "message": message,
        "description": "",
        "mx-host": "mx.example.net",
        "tls": True,
        "session-seconds": 0.4,
    }


def mailgun_failed(recipient: str, message_id: str, severity: str = "permanent") -> Payload:
    """A "failed" event: severity permanent (a bounce) or temporary (Mailgun retries)."""
    if severity == "permanent":
        status = _delivery_status(
            550, "5.1.1 The email account that you tried to reach does not exist."
        )
        kind, reason, level = "hard_bounce", "bounce", "error"
    else:
        status = _delivery_status(
            452, "4.2.2 The email account that you tried to reach is over quota."
        )
        kind, reason, level = "soft_bounce", "generic", "warn"
    return _mailgun(
        kind,
        recipient,
        message_id,
        event="failed",
        severity=severity,
        reason=reason,
        **{"log-level": level, "delivery-status": status},
    )


def mailgun_complained(recipient: str, message_id: str) -> Payload:
    """A "complained" event: the recipient reported the message as spam."""
    return _mailgun("complaint", recipient, message_id, event="complained", **{"log-level": "warn"})


def mailgun_unsubscribed(recipient: str, message_id: str) -> Payload:
    """An "unsubscribed" event: the recipient used Mailgun's unsubscribe link."""
    return _mailgun(
        "unsubscribe",
        recipient,
        message_id,
        event="unsubscribed",
        ip="203.0.113.7",
        **{"client-info": {"client-type": "browser", "user-agent": "Mozilla/5.0"}},
    )


def mailgun_delivered(recipient: str, message_id: str) -> Payload:
    """A "delivered" event: the receiving server said 250."""
    return _mailgun(
        "delivered",
        recipient,
        message_id,
        event="delivered",
        **{"delivery-status": _delivery_status(250, "OK")},
    )


# Amazon SES event publishing through SNS:
# https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html and
# .../event-publishing-retrieving-sns-contents.html; the SNS envelope and its HTTP headers:
# https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html and
# https://docs.aws.amazon.com/sns/latest/dg/SendMessageToHttp.prepare.html


def _ses_mail(recipient: str, message_id: str) -> dict[str, Any]:
    return {
        "timestamp": _now(),
        "source": "sender@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [recipient],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "sender@example.com"},
            {"name": "To", "value": recipient},
            {"name": "Subject", "value": "Hello"},
        ],
        "commonHeaders": {"from": ["sender@example.com"], "to": [recipient], "subject": "Hello"},
        "tags": {"ses:configuration-set": ["mailer"]},
    }


def sns_notification(kind: str, ses_event: dict[str, Any]) -> Payload:
    """An SNS HTTP notification carrying ``ses_event`` as its Message, with SNS's headers."""
    sns_id = str(uuid.uuid4())
    body = {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(ses_event),
        "Timestamp": _now(),
        "SignatureVersion": "1",
        "Signature": base64.b64encode(secrets.token_bytes(256)).decode(),  # not checked
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}:{uuid.uuid4()}",
    }
    headers = {
        "x-amz-sns-message-type": "Notification",
        "x-amz-sns-message-id": sns_id,
        "x-amz-sns-topic-arn": TOPIC_ARN,
        "x-amz-sns-subscription-arn": f"{TOPIC_ARN}:{uuid.uuid4()}",
        "User-Agent": "Amazon Simple Notification Service Agent",
    }
    return Payload("ses", kind, body, "text/plain; charset=UTF-8", headers)


def _ses_event(
    kind: str, event_type: str, detail: dict[str, Any], recipient: str, message_id: str
) -> Payload:
    """An SES event of ``event_type`` (its details under the type's name) about one message."""
    name = event_type[0].lower() + event_type[1:]
    event = {"eventType": event_type, name: detail, "mail": _ses_mail(recipient, message_id)}
    return sns_notification(kind, event)


def ses_bounce(recipient: str, message_id: str, bounce_type: str = "Permanent") -> Payload:
    """A Bounce event: Permanent/General (hard) or Transient/MailboxFull (soft)."""
    permanent = bounce_type == "Permanent"
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": "General" if permanent else "MailboxFull",
        "bouncedRecipients": [
            {
                "emailAddress": recipient,
                "action": "failed",
                "status": "5.1.1" if permanent else "4.2.2",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                if permanent
                else "smtp; 452 4.2.2 mailbox full",
            }
        ],
        "timestamp": _now(),
        "feedbackId": f"0100{secrets.token_hex(6)}-{uuid.uuid4()}-000000",
        "reportingMTA": "dsn; a8-50.smtp-out.amazonses.com",
    }
    kind = "hard_bounce" if permanent else "soft_bounce"
    return _ses_event(kind, "Bounce", bounce, recipient, message_id)


def ses_complaint(recipient: str, message_id: str) -> Payload:
    """A Complaint event: the recipient's mailbox provider forwarded a spam report."""
    complaint = {
        "complainedRecipients": [{"emailAddress": recipient}],
        "timestamp": _now(),
        "feedbackId": f"0100{secrets.token_hex(6)}-{uuid.uuid4()}-000000",
        "userAgent": "Mail/1.0",
        "complaintFeedbackType": "abuse",
        "arrivalDate": _now(),
    }
    return _ses_event("complaint", "Complaint", complaint, recipient, message_id)


def ses_subscription(recipient: str, message_id: str) -> Payload:
    """A Subscription event: the recipient unsubscribed from every topic of a contact list
    (SES's list management, e.g. through the List-Unsubscribe header)."""
    subscription = {
        "contactList": "Newsletter",
        "timestamp": _now(),
        "source": "UnsubscribeHeader",
        "newTopicPreferences": {
            "unsubscribeAll": True,
            "topicSubscriptionStatus": [{"topicName": "News", "subscriptionStatus": "OptOut"}],
        },
        "oldTopicPreferences": {
            "unsubscribeAll": False,
            "topicSubscriptionStatus": [{"topicName": "News", "subscriptionStatus": "OptIn"}],
        },
    }
    return _ses_event("unsubscribe", "Subscription", subscription, recipient, message_id)


def ses_delivery(recipient: str, message_id: str) -> Payload:
    """A Delivery event: the receiving server accepted the message."""
    delivery = {
        "timestamp": _now(),
        "processingTimeMillis": 812,
        "recipients": [recipient],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "a8-50.smtp-out.amazonses.com",
    }
    return _ses_event("delivered", "Delivery", delivery, recipient, message_id)


Builder = Callable[[str, str], Payload]
# Every provider's builder for each kind of event.
BUILDERS: dict[str, dict[str, Builder]] = {
    "postmark": {
        "hard_bounce": postmark_bounce,
        "soft_bounce": lambda to, mid: postmark_bounce(to, mid, "SoftBounce"),
        "complaint": postmark_complaint,
        "unsubscribe": postmark_unsubscribe,
        "delivered": postmark_delivered,
    },
    "mailgun": {
        "hard_bounce": mailgun_failed,
        "soft_bounce": lambda to, mid: mailgun_failed(to, mid, "temporary"),
        "complaint": mailgun_complained,
        "unsubscribe": mailgun_unsubscribed,
        "delivered": mailgun_delivered,
    },
    "ses": {
        "hard_bounce": ses_bounce,
        "soft_bounce": lambda to, mid: ses_bounce(to, mid, "Transient"),
        "complaint": ses_complaint,
        "unsubscribe": ses_subscription,
        "delivered": ses_delivery,
    },
}


def payload(provider: str, kind: str, recipient: str, message_id: str) -> Payload:
    return BUILDERS[provider][kind](recipient, message_id)


def basic_auth(secret: str) -> str:
    return "Basic " + base64.b64encode(secret.encode()).decode()


@contextmanager
def tracking_events() -> Iterator[tuple[list[AnymailTrackingEvent], list[str]]]:
    """Collect what anymail's ``tracking`` signal sends while the block runs."""
    events: list[AnymailTrackingEvent] = []
    esp_names: list[str] = []

    def receiver(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
        events.append(event)
        esp_names.append(esp_name)

    tracking.connect(receiver, weak=False)
    try:
        yield events, esp_names
    finally:
        tracking.disconnect(receiver)


def post(client: Client, payload: Payload, secret: str | None = WEBHOOK_SECRET) -> WebhookResult:
    """Post ``payload`` to anymail's tracking webhook for its provider, as the provider would
    (for SNS: first without credentials, then with them after the 401 challenge)."""
    url = reverse(URL_NAMES[payload.provider])
    data = json.dumps(payload.body).encode()
    challenged = False
    with tracking_events() as (events, esp_names):
        if payload.provider == "ses":
            first = client.post(
                url, data, content_type=payload.content_type, headers=payload.headers
            )
            challenged = first.status_code == 401 and "WWW-Authenticate" in first
            if not challenged:
                return WebhookResult(first, events, esp_names)
        headers = dict(payload.headers)
        if secret is not None:
            headers["Authorization"] = basic_auth(secret)
        response = client.post(url, data, content_type=payload.content_type, headers=headers)
    return WebhookResult(response, events, esp_names, challenged)

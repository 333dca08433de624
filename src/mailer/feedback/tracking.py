"""django-anymail's tracking events put addresses on the don't-send list.

anymail normalizes every provider's webhook into an event whose ``event_type`` is
one of its names ("bounced", "complained", "unsubscribed", "deferred"...). The
address is suppressed when the event, read as the provider meant it, is in
``MAILER_SUPPRESS_EVENTS``. Where a name does not say enough, the provider's own
event does:

* Amazon SES reports a soft bounce as "bounced" too: only a ``Permanent``
  bounce type suppresses (``Transient`` and ``Undetermined`` do not). An SES
  ``Subscription`` event (list management; anymail calls it "unknown") counts as
  "unsubscribed" when the recipient left every topic (``unsubscribeAll``).
* Postmark reports its ``SoftBounce`` (and virus notifications) as "bounced":
  only ``HardBounce`` suppresses.
* Brevo, Mandrill and MailerSend name their soft bounces so (``soft_bounce``,
  ``soft_bounced``), which anymail reports as "bounced": those do not suppress.
* Any other provider's "bounced" suppresses unless its SMTP response is a 4xx one.
"""

from __future__ import annotations

import re
from typing import Any

from mailer.conf import settings
from mailer.feedback.lookup import message_for
from mailer.queue.dontsend import DontSendEntry
from mailer.scrub import storable

_TEMPORARY = re.compile(r"^(?:smtp;\s*)?4\d\d\b|\b4\.\d{1,3}\.\d{1,3}\b")


def reason_for(event: Any, esp_name: str) -> str | None:
    """The don't-send reason ``event`` gives (anymail's event name), or None."""
    event_type = str(event.event_type or "")
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    if esp_event.get("eventType") == "Subscription" or esp_event.get("notificationType") == (
        "Subscription"
    ):
        new = (esp_event.get("subscription") or {}).get("newTopicPreferences") or {}
        event_type = "unsubscribed" if new.get("unsubscribeAll") is True else ""
    if event_type == "bounced" and not _hard_bounce(event, esp_name, esp_event):
        return None
    return event_type or None


def _hard_bounce(event: Any, esp_name: str, esp_event: dict[str, Any]) -> bool:
    if "bounce" in esp_event and isinstance(esp_event["bounce"], dict):  # Amazon SES
        return bool(esp_event["bounce"].get("bounceType") == "Permanent")
    if esp_name == "Postmark" or esp_event.get("RecordType") == "Bounce":
        return bool(esp_event.get("Type") == "HardBounce")
    named = " ".join(str(esp_event.get(key, "")) for key in ("event", "type"))
    if "soft_bounce" in named:  # Brevo and Mandrill: soft_bounce; MailerSend: soft_bounced
        return False
    return not _TEMPORARY.search(str(event.mta_response or "").strip())


def describe(event: Any) -> str:
    """The provider's words: its description and the receiving server's response."""
    parts = [str(p).strip() for p in (event.description, event.mta_response) if p]
    return storable(" -- ".join(dict.fromkeys(p for p in parts if p)))


def on_tracking(sender: Any, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    """anymail's ``tracking`` receiver: suppress the recipient if the event says so."""
    reason = reason_for(event, esp_name)
    if reason is None or reason not in settings.SUPPRESS_EVENTS or not event.recipient:
        return
    provider_id = str(event.message_id or "")
    found = message_for(provider_id)
    DontSendEntry.objects.suppress(
        event.recipient,
        reason,
        esp_name=esp_name[:50],
        description=describe(event),
        reported_at=event.timestamp,
        provider_message_id=provider_id[:255],
        queue_id=found.queue_id if found else None,
        message_id=found.message_id if found else "",
    )

"""The don't-send list in the admin: why each address is on it, filtered by reason, and
lifted by a user with ``mailer.lift_dontsendentry`` only."""

from __future__ import annotations

import pytest
from django.test import Client

from mailer.models import DontSendEntry, DontSendReason

from .admin_pages import VIEW, client_for, text, user_with

pytestmark = pytest.mark.django_db

DONT_SEND_LIST = "/admin/mailer/dontsendentry/"


@pytest.fixture
def entries() -> dict[str, DontSendEntry]:
    suppress = DontSendEntry.objects.suppress
    found = {
        "bounced": suppress(
            "bounced@example.com",
            DontSendReason.BOUNCED,
            esp_name="Amazon SES",
            description="Permanent: General -- smtp; 550 5.1.1 user unknown",
            queue_id=41,
            message_id="<41@example.com>",
            provider_message_id="0100abc-def-000000",
        ),
        "complained": suppress(
            "complained@example.com", DontSendReason.COMPLAINED, esp_name="Postmark"
        ),
        "manual": DontSendEntry.objects.create(to_address="by-hand@example.com"),
    }
    assert all(found.values())
    return {reason: entry for reason, entry in found.items() if entry is not None}


@pytest.fixture
def lifter() -> Client:
    return client_for(user_with("lifter", *VIEW, "lift_dontsendentry"))


def listed(client: Client, **filters: str) -> str:
    response = client.get(DONT_SEND_LIST, filters)
    assert response.status_code == 200
    return text(response)


def lift(client: Client, entry: DontSendEntry) -> None:
    client.post(DONT_SEND_LIST, {"action": "lift", "_selected_action": [str(entry.pk)]})
    entry.refresh_from_db()


def test_the_list_says_why_who_reported_it_and_which_message(
    viewer: Client, entries: dict[str, DontSendEntry]
) -> None:
    page = listed(viewer)
    assert "hard bounce" in page and "Amazon SES" in page
    assert "spam complaint" in page and "Postmark" in page
    assert "added by hand" in page
    assert 'href="/admin/mailer/messagelog/?queue_id=41"' in page
    assert "&lt;41@example.com&gt;" in page


def test_the_list_filters_by_reason_and_by_provider(
    viewer: Client, entries: dict[str, DontSendEntry]
) -> None:
    page = listed(viewer, reason__exact="complained")
    assert "complained@example.com" in page and "bounced@example.com" not in page
    page = listed(viewer, esp_name="Amazon SES")
    assert "bounced@example.com" in page and "complained@example.com" not in page


def test_a_user_with_the_permission_lifts_an_entry(
    lifter: Client, entries: dict[str, DontSendEntry]
) -> None:
    entry = entries["bounced"]
    lift(lifter, entry)

    assert entry.lifted_at is not None and entry.lifted_by == "lifter"
    assert not DontSendEntry.objects.has_address("bounced@example.com")
    assert "bounced@example.com" in listed(lifter, lifted="yes")
    assert "bounced@example.com" not in listed(lifter, lifted="no")


def test_a_user_without_it_is_not_offered_the_action_and_cannot_lift(
    viewer: Client, entries: dict[str, DontSendEntry]
) -> None:
    assert 'value="lift"' not in listed(viewer)
    entry = entries["bounced"]

    lift(viewer, entry)

    assert entry.lifted_at is None
    assert DontSendEntry.objects.has_address("bounced@example.com")


def test_an_entry_is_a_record_not_a_form(
    admin_client: Client, entries: dict[str, DontSendEntry]
) -> None:
    entry = entries["bounced"]
    page = text(admin_client.get(f"{DONT_SEND_LIST}{entry.pk}/change/"))
    assert "550 5.1.1 user unknown" in page
    assert 'name="to_address"' not in page and 'name="description"' not in page


def test_an_address_added_by_hand_is_listed_as_such(admin_client: Client) -> None:
    response = admin_client.post(
        f"{DONT_SEND_LIST}add/", {"to_address": "Someone@Example.com", "description": "asked us"}
    )
    assert response.status_code == 302
    entry = DontSendEntry.objects.get()
    assert (entry.reason, entry.description) == ("manual", "asked us")
    assert DontSendEntry.objects.has_address("someone@example.com")

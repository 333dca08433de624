"""The don't-send list: addresses no mail is sent to, and why (see docs/feedback)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db import connections, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.message.validation import address_key
from mailer.queue import sql


class DontSendEntryQuerySet(models.QuerySet["DontSendEntry"]):
    def active(self) -> DontSendEntryQuerySet:
        """Entries that keep mail from their address: all but those lifted."""
        return self.filter(lifted_at__isnull=True)

    def has_address(self, address: str) -> bool:
        """Is ``address`` on the don't-send list (case-insensitively)?"""
        return self.active().filter(to_address__iexact=address_key(address)).exists()

    def suppress(self, address: str, reason: str, **why: Any) -> DontSendEntry | None:
        """Put ``address`` on the list for ``reason`` (a ``DontSendReason``), keeping ``why``
        (provider, description, the message it was about...); None if it is on it already."""
        key = address_key(address)
        if "@" not in key or len(key) > ADDRESS_LENGTH:
            return None  # not an address mail is sent to
        if self.active().filter(to_address__iexact=key).exists():
            return None
        why["description"] = str(why.get("description") or "")[:DESCRIPTION_LENGTH]
        entry: DontSendEntry = self.create(to_address=key, reason=reason, **why)
        return entry

    def lift(self, by: str = "") -> int:
        """Let mail go to these entries' addresses again; the entries stay, marked lifted."""
        return self.active().update(lifted_at=timezone.now(), lifted_by=by[:150])

    def blocked(self, addresses: Iterable[str]) -> set[str]:
        """The lowercased addresses among ``addresses`` that are on the list: one query.

        Written out, with the database's own way to ask for many values at once
        (``mailer.queue.sql``: one array parameter on PostgreSQL, where the ORM's
        ``__in`` prepares each of thousands of addresses on its own).
        """
        wanted = list({address_key(a) for a in addresses if a})
        if not wanted or _empty_until.get(self.db, 0.0) > time.monotonic():
            return set()
        connection = connections[self.db]
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        column, lifted = f"LOWER({quote('to_address')})", quote("lifted_at")
        condition, params = sql.of(self.db).any_of(column, wanted)
        # A NULL row says the list is empty: remembered for a second, saving the
        # query for the messages queued meanwhile (the usual case: one per request).
        statement = (
            f"SELECT {column} FROM {table} WHERE {condition} AND {lifted} IS NULL "
            f"UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {lifted} IS NULL)"
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            found = {row[0] for row in cursor.fetchall()}
        if None in found:
            _empty_until[self.db] = time.monotonic() + DONT_SEND_EMPTY_SECONDS
            return set()
        return found


# How long this process trusts that the don't-send list is empty without asking.
# Entries added here are seen at once (the cache is dropped on save and delete);
# entries added by another process within that time are caught at delivery,
# where the list is read again for every run.
DONT_SEND_EMPTY_SECONDS = 1.0
_empty_until: dict[str, float] = {}


def _forget_empty(**kwargs: Any) -> None:
    _empty_until.clear()


DESCRIPTION_LENGTH = 1000  # of a provider's description kept on a don't-send entry
ADDRESS_LENGTH = 254  # the longest address (RFC 5321's path, less its brackets)


class DontSendReason(models.TextChoices):
    """Why an address is on the don't-send list: anymail's event names, or added by hand."""

    MANUAL = "manual", _("added by hand")
    BOUNCED = "bounced", _("hard bounce")
    COMPLAINED = "complained", _("spam complaint")
    UNSUBSCRIBED = "unsubscribed", _("unsubscribed")
    REJECTED = "rejected", _("rejected by the provider")


class DontSendEntry(models.Model):
    """An address no mail is sent to, and why: who reported what, when, about which message."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    to_address = models.EmailField(_("address"), max_length=ADDRESS_LENGTH)
    when_added = models.DateTimeField(_("added at"), default=timezone.now)
    reason = models.CharField(
        _("reason"), max_length=20, choices=DontSendReason.choices, default=DontSendReason.MANUAL
    )
    esp_name = models.CharField(_("reported by"), max_length=50, blank=True, default="")
    description = models.TextField(_("description"), blank=True, default="")
    reported_at = models.DateTimeField(_("reported at"), null=True, blank=True)
    queue_id = models.BigIntegerField(_("queue id"), null=True, blank=True)
    message_id = models.TextField(_("Message-ID"), blank=True, default="")
    provider_message_id = models.CharField(
        _("provider message id"), max_length=255, blank=True, default=""
    )
    lifted_at = models.DateTimeField(_("lifted at"), null=True, blank=True)
    lifted_by = models.CharField(_("lifted by"), max_length=150, blank=True, default="")

    objects = DontSendEntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("don't send entry")
        verbose_name_plural = _("don't send entries")
        permissions = [("lift_dontsendentry", _("Can lift a don't-send entry"))]
        indexes = [models.Index(fields=["reason", "when_added"], name="mailer_dontsend_reason_idx")]

    def __str__(self) -> str:
        return self.to_address


models.signals.post_save.connect(_forget_empty, sender=DontSendEntry)
models.signals.post_delete.connect(_forget_empty, sender=DontSendEntry)

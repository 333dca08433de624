"""The message ids an email service provider gave, one row per recipient of an attempt.

A provider's webhooks (bounces, complaints, deliveries) name the message by the id
the provider gave it, so that id is kept in an indexed column and leads back to the
log row of the attempt, and through it to the queued message
(``MessageLog.objects.by_provider_id``, ``Message.objects.by_provider_id``).
The same id is in the log row's ``recipients``; this table is there to find it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ProviderMessageId(models.Model):
    """The id a provider gave one recipient's copy of a message, in one attempt."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    # No database constraint and no cascade, as for every table of the queue: purging
    # the log deletes these rows itself (MessageLog.objects.purge_old_entries).
    log = models.ForeignKey(
        "mailer.MessageLog",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="provider_ids",
        verbose_name=_("log entry"),
    )
    address = models.CharField(_("recipient"), max_length=254)
    provider_id = models.CharField(_("provider's message id"), max_length=255, db_index=True)

    class Meta:
        verbose_name = _("provider message id")
        verbose_name_plural = _("provider message ids")

    def __str__(self) -> str:
        return f"{self.provider_id} ({self.address})"


__all__ = ["ProviderMessageId"]

"""The don't-send list: addresses no mail is sent to."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db import connections, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.message.validation import address_key


class DontSendEntryQuerySet(models.QuerySet["DontSendEntry"]):
    def has_address(self, address: str) -> bool:
        """Is ``address`` on the don't-send list (case-insensitively)?"""
        return self.filter(to_address__iexact=address_key(address)).exists()

    def blocked(self, addresses: Iterable[str]) -> set[str]:
        """The lowercased addresses among ``addresses`` that are on the list: one query.

        Written out, with one array parameter on PostgreSQL: the ORM's ``__in``
        prepares each of thousands of addresses on its own.
        """
        wanted = list({address_key(a) for a in addresses if a})
        if not wanted or _empty_until.get(self.db, 0.0) > time.monotonic():
            return set()
        connection = connections[self.db]
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        column = f"LOWER({quote('to_address')})"
        params: list[Any]
        if connection.vendor == "postgresql":
            condition, params = f"{column} = ANY(%s)", [wanted]
        else:
            condition, params = f"{column} IN ({', '.join(['%s'] * len(wanted))})", wanted
        # A NULL row says the list is empty: remembered for a second, saving the
        # query for the messages queued meanwhile (the usual case: one per request).
        sql = (
            f"SELECT {column} FROM {table} WHERE {condition} "
            f"UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM {table})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
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


class DontSendEntry(models.Model):
    """An address no mail is sent to."""

    id = models.BigAutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )
    to_address = models.EmailField(_("address"), max_length=254)
    when_added = models.DateTimeField(_("added at"), default=timezone.now)

    objects = DontSendEntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("don't send entry")
        verbose_name_plural = _("don't send entries")

    def __str__(self) -> str:
        return self.to_address


# -- Workers ---------------------------------------------------------------------


models.signals.post_save.connect(_forget_empty, sender=DontSendEntry)
models.signals.post_delete.connect(_forget_empty, sender=DontSendEntry)

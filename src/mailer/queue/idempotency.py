"""Idempotency keys: a message queued with a key already used is not queued again.

A message queued with a key claims it by inserting a row into a small table of
its own, in the same transaction as the message: if the caller's transaction
rolls back, the key is free again. The table's primary key decides between
callers that claim a key at the same time, in any process on any machine: the
second INSERT waits for the first one's transaction and then inserts nothing
(``ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite, ``INSERT IGNORE`` on
MariaDB and MySQL). No read comes before that write, and no error is raised
for a key taken, so the caller's transaction goes on.

A key stays used for ``MAILER_IDEMPOTENCY_WINDOW`` seconds, whatever becomes
of its message; a claim that finds an older row deletes it and claims again.
``purge_mail_log`` deletes the rows whose window has passed.

The table holds each key's SHA-256 digest, not the key: every database then
compares keys byte for byte (MariaDB's usual collations would take ``"A"`` and
``"a"``, or ``"a"`` and ``"a "``, for one key) and its index stays small. The
key itself is kept on the message and on its log rows.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from collections.abc import Collection, Sequence
from typing import Protocol, TypeVar

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailer.conf import settings
from mailer.queue import sql
from mailer.queue.batching import delete_in_batches

logger = logging.getLogger("mailer.queue")

# Keys claimed per INSERT statement.
CLAIM_BATCH = 1000
# Key rows deleted per DELETE statement by purge_expired().
PURGE_BATCH = 5000


class Keyed(Protocol):
    """A new message row: its key, or "" for none."""

    idempotency_key: str


K = TypeVar("K", bound=Keyed)


def digest(key: str) -> str:
    """What the key table stores for ``key``: its SHA-256, as 64 hex digits."""
    return hashlib.sha256(key.encode()).hexdigest()


def first_uses(rows: Sequence[K], using: str, now: datetime.datetime) -> list[K]:
    """``rows`` less those whose key was used within the window; claims the keys of the others.

    A row without a key is kept; of rows that share a key, the first is
    kept. Each row left out is logged as a duplicate. Call it in the
    transaction that inserts the rows kept.
    """
    digests = {
        row.idempotency_key: digest(row.idempotency_key) for row in rows if row.idempotency_key
    }
    claimed = claim(digests.values(), using, now)
    kept: list[K] = []
    seen: set[str] = set()
    for row in rows:
        key = row.idempotency_key
        if not key:
            kept.append(row)
        elif key in seen:
            logger.info("duplicate: not queued: idempotency key %r is used twice in one call", key)
        elif digests[key] not in claimed:
            logger.info(
                "duplicate: not queued: idempotency key %r was used within "
                "MAILER_IDEMPOTENCY_WINDOW",
                key,
            )
        else:
            seen.add(key)
            kept.append(row)
    return kept


def claim(digests: Collection[str], using: str, now: datetime.datetime) -> set[str]:
    """Claim the keys of ``digests`` (distinct) as used at ``now``; return those claimed.

    A key whose row is older than the window is claimed anew. In the
    caller's transaction; a key another transaction claimed and has not
    committed yet waits for it.
    """
    # One order for every caller, so that two calls claiming the same keys cannot deadlock.
    wanted = sorted(digests)
    if not wanted:
        return set()
    cutoff = now - datetime.timedelta(seconds=settings.IDEMPOTENCY_WINDOW)
    keys = IdempotencyKey.objects.using(using)
    if sql.of(using).IGNORED_KEYS_LOCKED:
        # Deleting a key the INSERT found taken would deadlock (MySQL's INSERT IGNORE):
        # expired keys are looked for first, with a read that locks nothing, and
        # deleted before the INSERT: the DELETE is the first to lock their rows.
        expired = keys.filter(digest__in=wanted, used_at__lt=cutoff)
        if expired.exists():
            expired._raw_delete(using)
        return _insert(wanted, using, now)
    claimed = _insert(wanted, using, now)
    taken = [d for d in wanted if d not in claimed]
    if taken and keys.filter(digest__in=taken, used_at__lt=cutoff)._raw_delete(using):
        claimed |= _insert(taken, using, now)
    return claimed


def has_returning(connection: BaseDatabaseWrapper) -> bool:
    """Can an INSERT say which rows it inserted? (Not on MySQL, nor SQLite before 3.35.)"""
    return bool(connection.features.can_return_rows_from_bulk_insert)


def _insert(digests: list[str], using: str, now: datetime.datetime) -> set[str]:
    """INSERT the digests that are not in the table yet; return those inserted.

    With ``RETURNING`` (PostgreSQL, SQLite 3.35+, MariaDB 10.5+) one
    statement per ``CLAIM_BATCH`` keys says which rows went in; without it
    (MySQL, older SQLite), one statement per key, judged by its row count.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = IdempotencyKey._meta
    column = {field.name: quote(str(field.column)) for field in meta.concrete_fields}
    when = meta.get_field("used_at").get_db_prep_save(now, connection)
    head, tail = sql.of(using).insert_ignoring()
    head += f" {quote(meta.db_table)} ({column['digest']}, {column['used_at']}) VALUES "
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        if has_returning(connection):
            for start in range(0, len(digests), CLAIM_BATCH):
                batch = digests[start : start + CLAIM_BATCH]
                values = ", ".join(["(%s, %s)"] * len(batch))
                params = [value for d in batch for value in (d, when)]
                cursor.execute(f"{head}{values}{tail} RETURNING {column['digest']}", params)
                inserted.update(row[0] for row in cursor.fetchall())
        else:
            for d in digests:
                cursor.execute(f"{head}(%s, %s){tail}", [d, when])
                if cursor.rowcount == 1:
                    inserted.add(d)
    return inserted


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    def purge_expired(self, now: datetime.datetime | None = None) -> int:
        """Delete the keys used longer than ``MAILER_IDEMPOTENCY_WINDOW`` ago; return how many."""
        cutoff = (now or timezone.now()) - datetime.timedelta(seconds=settings.IDEMPOTENCY_WINDOW)
        return delete_in_batches(self.filter(used_at__lt=cutoff), PURGE_BATCH)


class IdempotencyKey(models.Model):
    """An idempotency key used at enqueue, by its digest: no second message takes it."""

    digest = models.CharField(_("key digest"), max_length=64, primary_key=True)
    used_at = models.DateTimeField(_("used at"))

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        indexes = [models.Index(fields=["used_at"], name="mailer_key_used_idx")]

    def __str__(self) -> str:
        return f"{self.digest[:12]}... used at {self.used_at.isoformat(timespec='seconds')}"

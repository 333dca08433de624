"""The queue's SQL that only one database speaks, one module per database.

``postgres``, ``mysql`` (MariaDB too) and ``sqlite`` each have the functions of
:class:`Dialect`: their own where the database needs or allows other SQL, the
``standard`` ones elsewhere. The other queue modules ask :func:`of` for a
database's module rather than asking which database they are on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from django.db import connections, models

from mailer.queue.sql import mysql, postgres, sqlite, standard

if TYPE_CHECKING:
    from mailer.queue.message import Message, MessageQuerySet
    from mailer.queue.sql.standard import Column

    Deleting: TypeAlias = tuple[type[models.Model], Sequence[int]] | None
    InsertFromJson: TypeAlias = Callable[
        [Any, Sequence[models.Field[Any, Any]], str, Deleting], list[Any]
    ]
    ClaimRows: TypeAlias = Callable[
        [MessageQuerySet, MessageQuerySet, int, dict[str, Any], int | None], list[Message]
    ]

T = TypeVar("T")


class Dialect(Protocol):
    """What the queue asks of a database's module (``standard`` documents each)."""

    def claim_ids(
        self, queryset: MessageQuerySet, due: MessageQuerySet, limit: int, claim: dict[str, Any]
    ) -> list[int]: ...

    def retrying_deadlocks(self, using: str, transaction_: Callable[[], T]) -> T: ...

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]: ...

    def shared_value_sql(self, field: models.Field[Any, Any], connection: Any) -> str | None: ...

    def insert_sql(
        self,
        connection: Any,
        head: str,
        columns: Sequence[Column],
        varying: int,
        tail: str,
        notify: str,
    ) -> Callable[[int], str]: ...

    def max_params(self, connection: Any) -> int | None: ...

    def max_packet(self, connection: Any) -> int | None: ...

    def insert_ignoring(self) -> tuple[str, str]: ...

    def waiting_at_most(
        self, wrapper: Any, seconds: float
    ) -> contextlib.AbstractContextManager[bool]: ...

    def interrupter(self, wrapper: Any) -> Callable[[], None] | None: ...

    @property
    def CHANNEL(self) -> str: ...

    @property
    def IGNORED_KEYS_LOCKED(self) -> bool: ...

    @property
    def ONE_WRITER(self) -> bool: ...

    @property
    def insert_from_json(self) -> InsertFromJson | None: ...

    @property
    def claim_rows(self) -> ClaimRows | None: ...


DIALECTS: dict[str, Dialect] = {"postgresql": postgres, "mysql": mysql, "sqlite": sqlite}


def of(using: str) -> Dialect:
    """The module of database ``using``'s SQL (``standard`` for a database without one)."""
    return DIALECTS.get(connections[using].vendor, standard)

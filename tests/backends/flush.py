"""The flush shared by the suite's backends (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Rows that migrate's post_migrate handlers create and no test changes.
KEPT = frozenset({"django_content_type", "auth_permission"})


def emptied(tables: Iterable[str]) -> list[str]:
    """The tables a flush empties: all but ``KEPT``."""
    return [table for table in tables if table not in KEPT]


class QuickFlush:
    """Mixed into a backend's DatabaseOperations: flush every table but ``KEPT``."""

    def sql_flush(
        self,
        style: Any,
        tables: Any,
        *,
        reset_sequences: bool = False,
        allow_cascade: bool = False,
    ) -> list[str]:
        return super().sql_flush(  # type: ignore[misc,no-any-return]
            style, emptied(tables), reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )

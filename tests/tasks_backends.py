"""A Tasks backend for the tests, importable only where a Tasks framework is installed."""

from __future__ import annotations

from typing import Any

from mailer.compat import tasks_framework

BaseTaskBackend = tasks_framework().backends.base.BaseTaskBackend


class BrokenBackend(BaseTaskBackend):  # type: ignore[misc, valid-type]
    """Refuses every task, as a backend whose broker is down would."""

    supports_defer = True

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        raise ConnectionError("cannot enqueue: the task broker is down")

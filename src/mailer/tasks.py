"""The Django Tasks task that drains the queue, where task queues find it.

``mailer.tasks.send_queued_mail`` is the dotted path stored with every
enqueued drain, so it stays here; what a drain does, and how at most one waits
at a time, is :mod:`mailer.runner.tasks`. Django 6 has ``django.tasks``;
Django 5.2 needs the django-tasks backport (``pip install "mailer[tasks]"``).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import DEFAULT_DB_ALIAS

from mailer.compat import tasks_framework
from mailer.queue.message import Message
from mailer.runner import tasks as drains
from mailer.runner.tasks import NEXT, NOW, RESUME_AFTER, STALE_AFTER

if TYPE_CHECKING:
    from django.tasks import task
else:
    task = tasks_framework().task

__all__ = [
    "NEXT",
    "NOW",
    "RESUME_AFTER",
    "STALE_AFTER",
    "follow_up",
    "send_queued_mail",
    "wake",
    "wake_for",
]


@task()
def send_queued_mail(using: str = DEFAULT_DB_ALIAS, planned: str | None = None) -> dict[str, int]:
    """Deliver all due mail, as ``manage.py send_mail`` does; return the counts.

    Then make sure a drain runs when the next scheduled or deferred message
    falls due. ``planned`` is the ISO time a drain enqueued to run later was
    planned for: it serves that wake-up even if the clock of the host running
    it is a little behind.
    """
    return drains.drain(send_queued_mail, using, planned)


def wake(using: str = DEFAULT_DB_ALIAS, at: datetime.datetime | None = None) -> bool:
    """Make sure a drain runs at ``at`` (default: now); return whether one was enqueued."""
    return drains.wake(send_queued_mail, using, at)


def wake_for(messages: Sequence[Message], using: str = DEFAULT_DB_ALIAS) -> None:
    """Make sure a drain runs when the first of ``messages`` falls due."""
    drains.wake_for(send_queued_mail, messages, using)


def follow_up(using: str = DEFAULT_DB_ALIAS) -> None:
    """After a drain: make sure another runs when mail is next due."""
    drains.follow_up(send_queued_mail, using)

"""Filters for the queue's admin pages: how long ago, in words an operator reads at a glance."""

from __future__ import annotations

import datetime

from django import template

from mailer.admin import display

register = template.Library()


@register.filter
def duration(since: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """The time from ``since`` to ``now``: "3 hours, 2 minutes", or "less than a minute"."""
    return "" if since is None else display.duration(since, now)


@register.filter
def ago(since: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """A moment in the past: "5 minutes ago", "less than a minute ago"."""
    return "" if since is None else display.relative(since, now)

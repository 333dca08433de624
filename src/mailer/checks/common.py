"""What the checks share: their tag, and two questions every module asks."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from mailer.exceptions import MailerConfigurationError

TAG = "mailer"


def valid(setting: Any) -> bool:
    """Does ``setting`` hold a valid value? (If not, mailer.E002 says so.)"""
    try:
        setting.validate(setting.name, setting.raw())
    except MailerConfigurationError:
        return False
    return True


def import_problem(path: Any) -> str | None:
    """Why ``path`` cannot be imported (None if it can)."""
    if not isinstance(path, str):
        return f"{path!r} is not a dotted path"
    try:
        import_string(path)
    except Exception as error:  # any import-time failure makes the path unusable
        return f"{type(error).__name__}: {error}"
    return None

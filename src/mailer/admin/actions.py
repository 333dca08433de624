"""Who may do what in the admin, and the actions that change the queue (``mailer.send_message``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin
from django.http import HttpRequest

from mailer.compat import CHANGE_FORM_ACTIONS

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise
else:
    StrOrPromise = str

BODY_PERMISSION = "mailer.view_message_body"
SEND_PERMISSION = "mailer.send_message"
LIFT_PERMISSION = "mailer.lift_dontsendentry"

F = TypeVar("F", bound=Callable[..., Any])


def send_action(description: StrOrPromise) -> Callable[[F], F]:
    """An action that needs ``mailer.send_message``, offered on the list and on each page."""
    return permitted_action(description, "send")


def permitted_action(description: StrOrPromise, permission: str) -> Callable[[F], F]:
    """An action that needs ``has_<permission>_permission``, on the list and on each page."""
    where: dict[str, Any] = (
        {"location": [admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM]}
        if CHANGE_FORM_ACTIONS
        else {}  # DJANGO_COMPAT(<6.1): on the list only
    )

    def decorate(func: F) -> F:
        admin.action(description=description, permissions=[permission], **where)(func)
        return func

    return decorate


def can_view_body(request: HttpRequest) -> bool:
    return request.user.has_perm(BODY_PERMISSION)

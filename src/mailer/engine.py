"""What django-mailer's ``mailer.engine`` offered, kept importable: ``send_all`` and the
default error handler. The engine itself is :mod:`mailer.delivery.engine`; a run is
:mod:`mailer.runner.send`.
"""

from __future__ import annotations

from mailer.conf import DEFAULT_ERROR_HANDLER
from mailer.delivery.engine import SendCounts, handle_backend_exception, handle_delivery_exception
from mailer.runner.send import send_all

__all__ = [
    "DEFAULT_ERROR_HANDLER",
    "SendCounts",
    "handle_backend_exception",
    "handle_delivery_exception",
    "send_all",
]

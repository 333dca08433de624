"""What django-mailer's ``mailer.engine`` offered, kept importable: ``send_all``, the
default error handler, and the ``mailer.engine`` logger (code and tests written for
django-mailer patch ``mailer.engine.logger``). The engine itself is
:mod:`mailer.delivery.engine`; a run is :mod:`mailer.runner.send`.
"""

from __future__ import annotations

from mailer.conf import DEFAULT_ERROR_HANDLER
from mailer.delivery.engine import (
    SendCounts,
    handle_backend_exception,
    handle_delivery_exception,
    logger,
)
from mailer.runner.send import send_all

__all__ = [
    "DEFAULT_ERROR_HANDLER",
    "SendCounts",
    "handle_backend_exception",
    "handle_delivery_exception",
    "logger",
    "send_all",
]

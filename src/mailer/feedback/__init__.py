"""The feedback loop: what providers and servers report about delivered mail puts
addresses on the don't-send list.

* ``tracking``: django-anymail's ``tracking`` signal (its webhooks, installed by the
  project with anymail's own URLs and secret) -- hard bounces, complaints and
  unsubscribes, as ``MAILER_SUPPRESS_EVENTS`` says, read per provider.
* ``smtp``: a permanent per-recipient SMTP reply listed in ``MAILER_SUPPRESS_SMTP_CODES``.

``connect()`` is called once, when the app is ready.
"""

from __future__ import annotations

import importlib.util

from ..signals import message_deferred, message_failed, message_sent
from . import smtp


def connect() -> None:
    """Listen to anymail's tracking signal (when anymail is installed) and to our results."""
    for name, signal in [
        ("sent", message_sent),
        ("deferred", message_deferred),
        ("failed", message_failed),
    ]:
        signal.connect(smtp.on_result, dispatch_uid=f"mailer.feedback.smtp.{name}")
    if importlib.util.find_spec("anymail") is not None:
        from anymail.signals import tracking

        from . import tracking as feedback

        tracking.connect(feedback.on_tracking, dispatch_uid="mailer.feedback.tracking")

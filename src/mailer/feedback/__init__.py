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
from typing import Any

from django.core.signals import setting_changed

from mailer.conf import settings
from mailer.exceptions import MailerConfigurationError
from mailer.feedback import smtp
from mailer.signals import message_deferred, message_failed, message_sent

RESULT_SIGNALS = {"sent": message_sent, "deferred": message_deferred, "failed": message_failed}


def connect() -> None:
    """Listen to anymail's tracking signal (when anymail is installed), and to delivery
    results while ``MAILER_SUPPRESS_SMTP_CODES`` lists codes (results are signalled only
    to receivers that listen: none is added without a use)."""
    follow_smtp_codes()
    setting_changed.connect(_setting_changed, dispatch_uid="mailer.feedback.settings")
    if importlib.util.find_spec("anymail") is not None:
        from anymail.signals import tracking

        from mailer.feedback import tracking as feedback  # imports anymail: only if installed

        tracking.connect(feedback.on_tracking, dispatch_uid="mailer.feedback.tracking")


def follow_smtp_codes() -> None:
    try:
        wanted = bool(settings.SUPPRESS_SMTP_CODES)
    except MailerConfigurationError:
        wanted = True  # the receiver raises it where it is used, and mailer.E002 says so
    for name, signal in RESULT_SIGNALS.items():
        uid = f"mailer.feedback.smtp.{name}"
        if wanted:
            signal.connect(smtp.on_result, dispatch_uid=uid)
        else:
            signal.disconnect(dispatch_uid=uid)


def _setting_changed(setting: str, **kwargs: Any) -> None:
    """``override_settings`` (tests) changed a setting."""
    if setting == "MAILER_SUPPRESS_SMTP_CODES":
        follow_smtp_codes()

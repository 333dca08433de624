"""Django's model module for the app: every model and constant, defined in :mod:`mailer.queue`.

Code written for django-mailer imports ``Message``, ``MessageLog``,
``DontSendEntry`` and the priority and result constants from here, and keeps
doing so; the queue's code lives in ``mailer/queue/`` (see docs/architecture).
"""

from __future__ import annotations

from mailer.message.django_mailer import db_to_email, email_to_db
from mailer.priorities import (
    PRIORITIES,
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MAPPING,
    PRIORITY_MEDIUM,
)
from mailer.queue.django_mailer import make_message
from mailer.queue.dontsend import DontSendEntry, DontSendEntryQuerySet, DontSendReason
from mailer.queue.idempotency import IdempotencyKey
from mailer.queue.log import MessageLog, MessageLogQuerySet
from mailer.queue.message import Message, MessageQuerySet
from mailer.queue.provider_ids import ProviderMessageId
from mailer.queue.ratelimit import RateLimit, RateLimitQuerySet
from mailer.queue.states import (
    RESULT_CODES,
    RESULT_DONT_SEND,
    RESULT_FAILURE,
    RESULT_SUCCESS,
    Status,
)
from mailer.queue.workers import (
    DeliveryRun,
    DeliveryRunQuerySet,
    TaskWakeup,
    Worker,
    WorkerQuerySet,
)

__all__ = [
    "PRIORITIES",
    "PRIORITY_DEFERRED",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_MAPPING",
    "PRIORITY_MEDIUM",
    "RESULT_CODES",
    "RESULT_DONT_SEND",
    "RESULT_FAILURE",
    "RESULT_SUCCESS",
    "DeliveryRun",
    "DeliveryRunQuerySet",
    "DontSendEntry",
    "DontSendEntryQuerySet",
    "DontSendReason",
    "IdempotencyKey",
    "Message",
    "MessageLog",
    "MessageLogQuerySet",
    "MessageQuerySet",
    "ProviderMessageId",
    "RateLimit",
    "RateLimitQuerySet",
    "Status",
    "TaskWakeup",
    "Worker",
    "WorkerQuerySet",
    "db_to_email",
    "email_to_db",
    "make_message",
]

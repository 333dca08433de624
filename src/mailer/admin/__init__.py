"""The admin: the queue, the log, the don't-send list, the workers, and a dashboard.

Least privilege:

* stored mail is read-only here; nothing is added, edited or deleted by hand
  (cancelling leaves a log row);
* bodies, attachments and the HTML preview need ``mailer.view_message_body``
  (password-reset links live in bodies); search never looks into bodies
  (search.py), and the lists take no URL lookup beyond their own filters
  (lookups.py), so neither can be used to guess at a body;
* the preview is rewritten to load nothing remote (preview.py), and a
  malformed row is shown with a warning (validity.py), never an error page;
* retry now, requeue, cancel and send a copy need ``mailer.send_message``.
"""

from mailer.admin import dontsend, logs, messages, workers
from mailer.admin.actions import BODY_PERMISSION, SEND_PERMISSION, can_view_body, send_action
from mailer.admin.base import MAX_ATTEMPTS_SHOWN, PREVIEW_POLICY, ReadOnly, StoredMailAdmin
from mailer.admin.dontsend import DontSendEntryAdmin
from mailer.admin.filters import MailerFilter, StateFilter
from mailer.admin.logs import MessageLogAdmin
from mailer.admin.messages import MessageAdmin
from mailer.admin.workers import WorkerAdmin

__all__ = [
    "BODY_PERMISSION",
    "MAX_ATTEMPTS_SHOWN",
    "PREVIEW_POLICY",
    "SEND_PERMISSION",
    "DontSendEntryAdmin",
    "MailerFilter",
    "MessageAdmin",
    "MessageLogAdmin",
    "ReadOnly",
    "StateFilter",
    "StoredMailAdmin",
    "WorkerAdmin",
    "can_view_body",
    "dontsend",
    "logs",
    "messages",
    "send_action",
    "workers",
]

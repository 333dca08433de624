"""Our side of the upgrade test: the project after switching to our package.

    python mailer_side.py migrate   # manage.py migrate on django-mailer's database
    python mailer_side.py send      # manage.py send_mail

Run with ``src`` on the path. Prints the state of the queue as JSON, read
through our models.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ["DJANGO_SETTINGS_MODULE"] = "mailer_settings"

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402

import mailer  # noqa: E402
from mailer.message import codec as storage  # noqa: E402
from mailer.models import DontSendEntry, Message, MessageLog  # noqa: E402

if getattr(mailer, "__version__", None) == "2.3.2":
    sys.exit(f"expected our package, imported django-mailer from {mailer.__file__}")


def state() -> dict[str, Any]:
    """The queue, the log and the don't-send list, as our models read them."""
    return {
        "migrations": sorted(
            name
            for app, name in MigrationRecorder(connection).applied_migrations()
            if app == "mailer"
        ),
        "messages": [
            {
                "id": m.pk,
                "status": m.status,
                "priority": m.priority,
                "retry_count": m.retry_count,
                "when_added": m.when_added.isoformat(),
                "due": m.due_at is not None,
                "last_reply": m.last_reply,
                "subject": m.subject,
                "to": m.to_addresses,
                "json": m.message_data.startswith("{"),
                "message_id": m.stored_message_id,
            }
            for m in Message.objects.order_by("pk")
        ],
        "logs": [
            {
                "id": log.pk,
                "result": log.result,
                "message_id": log.message_id,
                "when_added": log.when_added.isoformat(),
                "when_attempted": log.when_attempted.isoformat(),
                "priority": log.priority,
                "log_message": log.log_message,
                "has_data": log.message_data is not None,
                "subject": log.subject,
                "to": log.to_addresses,
                "email_subject": None if log.email is None else str(log.email.subject),
                "data_message_id": None if log.email is None else storage.message_id(log.email),
            }
            for log in MessageLog.objects.order_by("pk")
        ],
        "dont_send": [
            {"id": e.pk, "to_address": e.to_address, "when_added": e.when_added.isoformat()}
            for e in DontSendEntry.objects.order_by("pk")
        ],
        # Pickles are read once, by the migration: nothing else may load the reader.
        "legacy_loaded": "mailer.message.pickles" in sys.modules,
    }


def main() -> None:
    command = sys.argv[1]
    if command == "migrate":
        call_command("migrate", verbosity=0)
    elif command == "send":
        call_command("send_mail", verbosity=0)
    else:
        sys.exit(f"unknown command {command}")
    json.dump(state(), sys.stdout)


if __name__ == "__main__":
    main()

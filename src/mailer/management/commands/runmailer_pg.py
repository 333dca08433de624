"""``manage.py runmailer_pg``: runmailer woken by PostgreSQL NOTIFY (the contract's name)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.db import connections

from mailer.management.commands.runmailer import Command as RunMailer
from mailer.runner.wakeup import can_listen


class Command(RunMailer):
    help = "Like runmailer, woken instantly by PostgreSQL LISTEN/NOTIFY when mail is queued."
    listen = True

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if not can_listen(using):
            name = connections[using].display_name
            raise CommandError(f"runmailer_pg needs PostgreSQL; this database is {name}.")
        super().handle(*args, **options)

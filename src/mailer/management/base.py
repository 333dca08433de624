"""What the mailer's management commands share: cron-friendly output and errors."""

from __future__ import annotations

import logging
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from mailer.exceptions import MailerConfigurationError, TablesMissing


class MailerCommand(BaseCommand):
    """Prints one summary line (nothing at ``-v 0``); fails loudly on bad settings."""

    # django-mailer's send_mail and retry_deferred take "-c/--cron N" (1: print only
    # errors), and crontabs still carry it: ours too (cron_takes_value). The other
    # commands accept a bare -c, with no effect, as they always have here.
    cron_takes_value = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        if self.cron_takes_value:
            parser.add_argument(
                "-c",
                "--cron",
                type=int,
                nargs="?",
                const=0,
                default=0,
                metavar="0|1",
                help="django-mailer's option: 1 prints nothing but errors (as -v 0); "
                "0, or -c alone, changes nothing.",
            )
        else:
            parser.add_argument(
                "-c", "--cron", action="store_true", help="Accepted for compatibility; no effect."
            )

    def execute(self, *args: Any, **options: Any) -> Any:
        if self.cron_takes_value and options.get("cron"):
            options["verbosity"] = 0
        self.verbosity = int(options.get("verbosity", 1))
        _configure_logging(self.verbosity)
        try:
            return super().execute(*args, **options)
        except MailerConfigurationError as error:
            raise CommandError(f"mailer is misconfigured: {error}") from error
        except DatabaseError as error:
            missing = TablesMissing.from_error(error)
            if missing is None:
                raise
            raise CommandError(str(missing)) from error

    @staticmethod
    def add_number_option(parser: ArgumentParser, flag: str, help: str) -> None:
        """An optional whole number (None when not given: the setting decides)."""
        parser.add_argument(flag, type=int, default=None, help=help)

    def say(self, line: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(line)

    def interactive(self) -> bool:
        return self.verbosity >= 1 and sys.stdout.isatty()


def _configure_logging(verbosity: int) -> None:
    """Send the mailer's log to stderr when asked for detail (-v 2 and up)."""
    logger = logging.getLogger("mailer")
    if verbosity >= 2 and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbosity >= 3 else logging.INFO)


__all__ = ["CommandError", "MailerCommand"]

"""What the mailer's management commands share: cron-friendly output and errors."""

from __future__ import annotations

import logging
import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailer.exceptions import MailerConfigurationError


class MailerCommand(BaseCommand):
    """Prints one summary line (nothing at ``-v 0``); fails loudly on bad settings."""

    def add_arguments(self, parser: ArgumentParser) -> None:
        # django-mailer's -c/--cron, still found in crontabs: accepted, no longer needed.
        parser.add_argument(
            "-c", "--cron", action="store_true", help="Accepted for compatibility; has no effect."
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        self.verbosity = int(options.get("verbosity", 1))
        _configure_logging(self.verbosity)
        try:
            return super().execute(*args, **options)
        except MailerConfigurationError as error:
            raise CommandError(f"mailer is misconfigured: {error}") from error

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

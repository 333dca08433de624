"""django-mailer's ``-c/--cron N`` on send_mail and retry_deferred, as crontabs write it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from mailer.models import Message

from . import processes
from .samples import batch

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


class TestCronOne:
    """``--cron 1`` is quiet mode: nothing printed but errors, and the work is done."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    @pytest.mark.parametrize("spelling", [["--cron", "1"], ["-c", "1"], ["-c1"], ["--cron=1"]])
    def test_send_mail_sends_and_prints_nothing(self, spelling: list[str]) -> None:
        Message.objects.enqueue(batch(2))
        assert run("send_mail", *spelling) == ""
        assert len(self.server.received) == 2

    def test_retry_deferred_retries_and_prints_nothing(self) -> None:
        Message.objects.enqueue(batch(1), priority="deferred")
        assert run("retry_deferred", "--cron", "1") == ""
        assert Message.objects.due().count() == 1

    def test_errors_are_still_raised(self, settings: Any, legacy_style: None) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        with pytest.raises(CommandError, match="MAILER_EMAIL_BACKEND"):
            run("send_mail", "--cron", "1")


class TestCronZero:
    """``--cron 0`` and the bare ``-c`` this project accepted before change nothing."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    @pytest.mark.parametrize("spelling", [["--cron=0"], ["-c", "0"], ["-c0"], ["-c"], ["--cron"]])
    def test_send_mail_prints_its_summary(self, spelling: list[str]) -> None:
        Message.objects.enqueue(batch(1))
        assert run("send_mail", *spelling).startswith("sent 1, deferred 0, failed 0 in ")

    @pytest.mark.parametrize("spelling", [["--cron=0"], ["-c"]])
    def test_retry_deferred_prints_its_summary(self, spelling: list[str]) -> None:
        assert run("retry_deferred", *spelling) == "0 message(s) retried\n"

    def test_call_command_takes_the_keyword_too(self) -> None:
        Message.objects.enqueue(batch(1))
        assert run("send_mail", cron=1) == ""
        assert len(self.server.received) == 1

    def test_a_value_that_is_not_a_number_is_refused(self) -> None:
        with pytest.raises(CommandError, match="invalid int value"):
            run("send_mail", "--cron", "yes")

    def test_the_other_commands_keep_the_bare_flag(self) -> None:
        assert run("purge_mail_log", "-c", "7") == "0 log entries deleted\n"


class TestCrontabLines:
    """The lines of a real crontab, parsed by a real ``manage.py`` process."""

    @pytest.mark.parametrize(
        "argv",
        [
            ["send_mail", "--cron", "1"],
            ["send_mail", "-c", "1"],
            ["send_mail", "-c1"],
            ["retry_deferred", "--cron", "1"],
            ["retry_deferred", "-c", "1"],
        ],
    )
    def test_quiet_lines_exit_0_and_print_nothing(self, argv: list[str], smtp: Any) -> None:
        Message.objects.enqueue(batch(1))
        done = processes.run(argv, smtp.port)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    @pytest.mark.parametrize("argv", [["send_mail", "--cron=0"], ["send_mail", "-c"]])
    def test_other_lines_print_their_summary(self, argv: list[str], smtp: Any) -> None:
        Message.objects.enqueue(batch(1))
        done = processes.run(argv, smtp.port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("sent 1, deferred 0, failed 0 in ")
        assert len(smtp.received) == 1

"""The management commands as an operator runs them: output, exit codes, the lock."""

from __future__ import annotations

import datetime
import io
import logging
import os
import signal
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailer.conf import settings as mailer_settings
from mailer.management.progress import ProgressBar
from mailer.models import RESULT_FAILURE, RESULT_SUCCESS, Message, MessageLog, Status
from mailer.runner.lock import LockHeld, send_lock

from . import processes
from .assertions import MailAssertions
from .samples import batch, token_of

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


class TestSendMail(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_it_prints_one_summary_line(self) -> None:
        Message.objects.enqueue(batch(3))
        output = run("send_mail")
        assert output.startswith("sent 3, deferred 0, failed 0 in ")
        assert output.count("\n") == 1

    def test_it_prints_nothing_at_verbosity_zero_for_cron(self) -> None:
        Message.objects.enqueue(batch(2))
        assert run("send_mail", verbosity=0) == ""
        assert len(self.server.received) == 2

    def test_django_mailers_cron_flag_is_still_accepted(self) -> None:
        Message.objects.enqueue(batch(1))
        assert run("send_mail", "-c").startswith("sent 1,")
        assert run("retry_deferred", "--cron").startswith("0 message(s) retried")

    def test_max_sends_at_most_that_many(self) -> None:
        Message.objects.enqueue(batch(5))
        assert run("send_mail", "--max", "2").startswith("sent 2,")
        assert Message.objects.count() == 3

    def test_a_misconfigured_backend_is_a_clear_error(
        self, settings: Any, legacy_style: None
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        with pytest.raises(CommandError, match="MAILER_EMAIL_BACKEND"):
            run("send_mail")

    def test_a_misconfigured_backend_exits_non_zero(self) -> None:
        done = processes.run(
            ["send_mail"],
            self.server.port,
            MAILER_TEST_SETTINGS='{"MAILER_EMAIL_MAX_BATCH": "lots"}',
        )
        assert done.returncode == 1
        assert "MAILER_EMAIL_MAX_BATCH" in done.stderr

    def test_a_run_that_finds_another_one_active_says_so_and_exits_0(self) -> None:
        Message.objects.enqueue(batch(1))
        with send_lock():
            output = run("send_mail")
            done = processes.run(["send_mail"], self.server.port)
        assert "another send_mail run" in output and "holds" in output
        assert done.returncode == 0, done.stderr
        assert "holds" in done.stdout
        assert not self.server.received
        assert run("send_mail").startswith("sent 1,")

    def test_a_killed_run_never_blocks_the_next(self) -> None:
        self.server.faults.data_delay = 0.05
        messages = batch(60)
        tokens = [token_of(m) for m in messages]
        Message.objects.enqueue(messages)
        victim = processes.start(["send_mail"], self.server.port)
        processes.wait_until(lambda: len(self.server.received) >= 5, timeout=30)
        processes.stop(victim, signal.SIGKILL)
        self.server.faults.data_delay = 0
        done = processes.run(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("sent ")
        arrived = self.server.tokens()
        assert set(tokens) <= set(arrived)
        self.assert_queue_empty()

    def test_the_default_lock_lives_in_the_temp_dir_not_the_current_directory(
        self, settings: Any
    ) -> None:
        settings.MAILER_LOCK_PATH = None
        path = mailer_settings.lock_file
        assert os.path.isabs(path) and path.endswith(".lock")
        assert not path.startswith(os.getcwd())
        with send_lock(), pytest.raises(LockHeld), send_lock():
            pass

    def test_it_draws_a_progress_bar_on_a_terminal_with_a_long_queue(
        self, monkeypatch: Any
    ) -> None:
        monkeypatch.setattr(ProgressBar, "THRESHOLD", 5)
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
        Message.objects.enqueue(batch(8))
        out = io.StringIO()
        call_command("send_mail", stdout=out)
        text = out.getvalue()
        assert "\r[" in text and "/8 " in text  # the bar, drawn in place
        assert text.rstrip("\n").rsplit("\r", 1)[-1].startswith("sent 8,")

    def test_the_progress_bar_shows_counts_and_rate(self) -> None:
        out = io.StringIO()
        from django.core.management.base import OutputWrapper

        bar = ProgressBar(10, OutputWrapper(out))
        bar._last = -1.0
        bar.update((4, 1, 0))
        assert "[###############...............] 5/10" in out.getvalue()

    def test_it_logs_through_the_mailer_logger_hierarchy(self, caplog: Any) -> None:
        Message.objects.enqueue(batch(1))
        with caplog.at_level(logging.INFO, logger="mailer"):
            run("send_mail", verbosity=0)
        assert {r.name for r in caplog.records} >= {"mailer.engine"}
        assert all(r.name.startswith("mailer.") for r in caplog.records)


class TestRetryDeferred:
    def test_it_reports_how_many_it_retried_and_failed(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_RETRIES = 1
        Message.objects.enqueue(batch(3), priority="deferred")
        Message.objects.filter(pk=Message.objects.first().pk).update(retry_count=5)  # type: ignore[union-attr]
        assert run("retry_deferred") == "2 message(s) retried, 1 failed (retries used up)\n"
        assert Message.objects.failed().count() == 1

    def test_age_and_limit_options(self) -> None:
        Message.objects.enqueue(batch(4), priority="deferred")
        old = list(Message.objects.values_list("pk", flat=True)[:1])
        Message.objects.filter(pk__in=old).update(
            when_added=timezone.now() - datetime.timedelta(hours=5)
        )
        assert run("retry_deferred", "--max-age", "2", "--limit", "2") == "2 message(s) retried\n"
        assert Message.objects.filter(pk__in=old, status=Status.DEFERRED).exists()


class TestPurgeMailLog:
    @pytest.fixture
    def logs(self) -> None:
        old = timezone.now() - datetime.timedelta(days=10)
        for result in (RESULT_SUCCESS, RESULT_SUCCESS, RESULT_FAILURE, "2"):
            MessageLog.objects.create(
                when_added=old, when_attempted=old, priority=2, result=result, log_message=""
            )

    @pytest.mark.parametrize(
        "args, deleted, left",
        [
            ((), 2, 2),
            (("-r", "success"), 2, 2),
            (("-r", "failure"), 1, 3),
            (("-r", "all"), 4, 0),
        ],
    )
    def test_it_removes_old_entries_as_the_contract_says(
        self, logs: None, args: tuple[str, ...], deleted: int, left: int
    ) -> None:
        assert run("purge_mail_log", "7", *args) == f"{deleted} log entries deleted\n"
        assert MessageLog.objects.count() == left

    def test_recent_entries_stay(self, logs: None) -> None:
        assert run("purge_mail_log", "30", "-r", "all") == "0 log entries deleted\n"


class TestRunmailerOptions:
    def test_concurrency_must_be_positive(self) -> None:
        with pytest.raises(CommandError, match="--concurrency"):
            run("runmailer", "--concurrency", "0")

    def test_debug_sets_the_mailer_log_to_debug(self) -> None:
        logger = logging.getLogger("mailer")
        level = logger.level
        try:
            assert (
                run("runmailer", "--debug", "--exit-when-idle") == "sent 0, deferred 0, failed 0\n"
            )
            assert logger.getEffectiveLevel() == logging.DEBUG
        finally:
            logger.setLevel(level)

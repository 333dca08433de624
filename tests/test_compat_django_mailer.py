"""What code written for django-mailer 2.x finds here: its module-level helpers, its
meaning of "deferred", its backend loop error and its log of the message as sent."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.management import call_command

import mailer
from mailer.engine import send_all
from mailer.exceptions import InvalidAddress, NotAnEmailMessage
from mailer.models import (
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_MEDIUM,
    DontSendEntry,
    Message,
    MessageLog,
    Status,
    db_to_email,
    email_to_db,
    make_message,
)

from .samples import as_django_mailer_stored, batch, plain, with_attachments

pytestmark = pytest.mark.django_db(transaction=True)


class SignsWhatItSends(LocmemBackend):
    """A delivery backend that changes each message while sending it, as test backends
    and some provider backends do."""

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        for message in messages:
            message.extra_headers["X-Sent-By"] = "the delivery backend"
        return super().send_messages(messages)


def deliver_through(settings: Any, path: str) -> None:
    """Make ``path`` the delivery backend, in this run's configuration style."""
    if hasattr(django_settings, "MAILERS"):
        # DJANGO_COMPAT(<6.1): MAILERS aliases are new in Django 6.1.
        settings.MAILERS = {**django_settings.TEST_MAILERS, "smtp": {"BACKEND": path}}
    else:
        settings.MAILER_EMAIL_BACKEND = path


class Unpickled(Exception):
    """Raised if anything were ever unpickled from stored data."""


class Trap:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_explode, ("db_to_email unpickled stored data",))


def _explode(text: str) -> None:
    raise Unpickled(text)


class TestStoredFormatHelpers:
    def test_email_to_db_gives_the_text_a_queued_message_stores(self) -> None:
        message = with_attachments(to=["a@example.com"])
        data = email_to_db(message)
        assert isinstance(data, str)
        row = Message(message_data=data)
        assert row.subject == message.subject and row.to_addresses == ["a@example.com"]

    def test_db_to_email_reads_it_back(self) -> None:
        message = with_attachments(to=["a@example.com"])
        again = db_to_email(email_to_db(message))
        assert isinstance(again, EmailMultiAlternatives)
        assert (again.subject, again.body, again.from_email, again.to) == (
            message.subject,
            message.body,
            message.from_email,
            message.to,
        )
        assert len(again.attachments) == len(message.attachments)
        assert again.attachments[:2] == message.attachments[:2]  # then a MIME part, rebuilt
        assert again.alternatives == message.alternatives

    def test_db_to_email_reads_what_the_queue_stored(self) -> None:
        (row,) = Message.objects.enqueue([plain(to=["q@example.com"])])
        email = db_to_email(row.message_data)
        assert email is not None and email.to == ["q@example.com"]

    @pytest.mark.parametrize("empty", ["", None, b""])
    def test_empty_data_is_none(self, empty: Any) -> None:
        assert db_to_email(empty) is None

    def test_a_django_mailer_pickle_is_none_and_never_unpickled(self) -> None:
        assert db_to_email(as_django_mailer_stored(Trap())) is None
        assert db_to_email(pickle.dumps(Trap())) is None
        assert db_to_email(as_django_mailer_stored(plain())) is None

    def test_data_that_is_not_ours_is_none(self) -> None:
        assert db_to_email("not a stored message") is None
        assert db_to_email('{"v": 999}') is None

    def test_only_email_messages_are_stored(self) -> None:
        with pytest.raises(NotAnEmailMessage) as refused:
            email_to_db("Hello Email")  # type: ignore[arg-type]
        assert isinstance(refused.value, TypeError)


class TestMakeMessage:
    def test_takes_django_mailers_arguments_in_its_order(self) -> None:
        row = make_message(
            "Subject", "Body", "from@example.com", ["to@example.com"], ["bcc@example.com"]
        )
        email = row.email
        assert email is not None
        assert (email.subject, email.body, email.from_email) == (
            "Subject",
            "Body",
            "from@example.com",
        )
        assert (email.to, email.bcc) == (["to@example.com"], ["bcc@example.com"])

    def test_the_message_is_queued_when_saved_and_not_before(self, smtp: Any) -> None:
        row = make_message(
            subject="S", body="B", from_email="f@example.com", to=["t@example.com"], priority=1
        )
        assert row.pk is None and Message.objects.count() == 0
        row.save()
        assert row.priority == PRIORITY_HIGH
        assert Message.objects.due().count() == 1
        assert send_all().sent == 1
        assert [m.rcpt_tos for m in smtp.received] == [["t@example.com"]]

    def test_recipients_on_the_dont_send_list_are_left_out(self) -> None:
        DontSendEntry.objects.create(to_address="Blocked@example.com")
        row = make_message(
            to=["ok@example.com", "blocked@example.com"], bcc=["BLOCKED@example.com"]
        )
        email = row.email
        assert email is not None and (email.to, email.bcc) == (["ok@example.com"], [])

    def test_priority_defaults_and_names(self) -> None:
        assert make_message(to=["a@example.com"]).priority == PRIORITY_MEDIUM
        held = make_message(to=["a@example.com"], priority=PRIORITY_DEFERRED)
        held.save()
        assert held.state == "held"
        assert Message.objects.retry_deferred() == 1

    def test_a_message_id_given_in_the_headers_is_kept_and_logged(self, smtp: Any) -> None:
        make_message(
            subject="S",
            body="B",
            from_email="f@example.com",
            to=["t@example.com"],
            priority=PRIORITY_MEDIUM,
            headers={"message-id": "<given@example.com>"},
        ).save()
        send_all()
        log = MessageLog.objects.get()
        assert log.message_id == "<given@example.com>"
        assert log.email is not None and log.email.extra_headers["message-id"] == log.message_id

    def test_the_email_may_be_replaced_before_saving(self, smtp: Any) -> None:
        row = make_message(to=["t@example.com"])
        row.email = with_attachments(to=["other@example.com"])
        row.save()
        send_all()
        assert [m.rcpt_tos for m in smtp.received] == [["other@example.com"]]

    def test_bad_input_raises_as_queueing_does(self) -> None:
        with pytest.raises(InvalidAddress):
            make_message(to=["ok@example.com", None])  # type: ignore[list-item]


class TestDeferredMeansWhatDjangoMailerMeant:
    def states(self) -> dict[str, int]:
        return {
            "held": Message.objects.enqueue(batch(1), priority="deferred")[0].pk,
            "queued": Message.objects.enqueue(batch(1))[0].pk,
            "deferred": Message.objects.enqueue(batch(1))[0].pk,
            "failed": Message.objects.enqueue(batch(1))[0].pk,
        }

    def test_deferred_is_held_deferred_and_failed_mail(self) -> None:
        rows = self.states()
        Message.objects.filter(pk=rows["deferred"]).update(status=Status.DEFERRED)
        Message.objects.filter(pk=rows["failed"]).update(status=Status.FAILED, due_at=None)
        found = set(Message.objects.deferred().values_list("pk", flat=True))
        assert found == {rows["held"], rows["deferred"], rows["failed"]}
        assert set(Message.objects.non_deferred().values_list("pk", flat=True)) == {rows["queued"]}

    def test_retry_deferred_requeues_held_and_deferred_mail_not_failed(self) -> None:
        rows = self.states()
        Message.objects.filter(pk=rows["deferred"]).update(status=Status.DEFERRED)
        Message.objects.filter(pk=rows["failed"]).update(status=Status.FAILED, due_at=None)
        assert Message.objects.retry_deferred() == 2
        assert set(Message.objects.deferred().values_list("pk", flat=True)) == {rows["failed"]}
        assert Message.objects.held().count() == 0

    def test_with_no_retries_a_failed_message_stays_deferred(
        self, settings: Any, smtp: Any
    ) -> None:
        settings.MAILER_EMAIL_MAX_RETRIES = 0
        smtp.faults.transient_first = 10
        mailer.send_mail("S", "B", "f@example.com", ["t@example.com"])
        send_all()
        assert Message.objects.deferred().count() == 1  # the alert on this count still fires
        assert Message.objects.get().state == "failed"
        call_command("retry_deferred", verbosity=0)
        assert Message.objects.deferred().count() == 1
        send_all()
        assert MessageLog.objects.count() == 1  # not tried again

    def test_the_retry_deferred_command_says_what_it_retried(self) -> None:
        Message.objects.enqueue(batch(2), priority="deferred")
        out = _run("retry_deferred")
        assert out == "2 message(s) retried\n"


class TestSendAllChecksTheBackendFirst:
    def test_both_settings_dbbackend_raise_with_an_empty_queue(
        self, legacy_style: None, settings: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        assert Message.objects.count() == 0
        with pytest.raises(ImproperlyConfigured) as raised:
            send_all()
        text = str(raised.value)
        assert "mailer.backend.DbBackend" in text
        assert "MAILER_EMAIL_BACKEND" in text
        assert "EMAIL_BACKEND" in text.replace("MAILER_EMAIL_BACKEND", "")

    def test_nothing_is_claimed_first(self, legacy_style: None, settings: Any) -> None:
        Message.objects.enqueue(batch(1))
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        with pytest.raises(ImproperlyConfigured):
            send_all()
        assert Message.objects.get().state == "queued"


class TestTheLogKeepsTheMessageAsSent:
    def test_a_header_the_backend_added_is_in_the_log(self, settings: Any) -> None:
        deliver_through(settings, f"{__name__}.SignsWhatItSends")
        mailer.send_mail("S", "B", "f@example.com", ["t@example.com"])
        assert send_all().sent == 1
        log = MessageLog.objects.get()
        assert log.email is not None
        assert log.email.extra_headers["X-Sent-By"] == "the delivery backend"
        assert log.message_id == log.email.extra_headers["Message-ID"]

    def test_a_message_the_backend_left_alone_is_logged_as_queued(self, smtp: Any) -> None:
        (row,) = Message.objects.enqueue(batch(1))
        send_all()
        assert MessageLog.objects.get().message_data == row.message_data

    def test_without_message_data_in_the_log_nothing_is_kept(self, settings: Any) -> None:
        settings.MAILER_EMAIL_LOG_MESSAGE_DATA = False
        deliver_through(settings, f"{__name__}.SignsWhatItSends")
        mailer.send_mail("S", "B", "f@example.com", ["t@example.com"])
        send_all()
        assert MessageLog.objects.get().message_data is None


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


class TestTheDifferencesAreDocumented:
    def test_every_expected_failure_of_django_mailers_suite_is_in_migrating_rst(self) -> None:
        import importlib.util
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        spec = importlib.util.spec_from_file_location(
            "django_mailer_suite", root / "scripts" / "django_mailer_suite.py"
        )
        assert spec is not None and spec.loader is not None
        suite = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(suite)
        migrating = (root / "docs" / "migrating.rst").read_text(encoding="utf-8")
        documented = migrating.split("Deliberate differences", 1)[1].split("\nFrom ", 1)[0]
        for test_id in suite.DIFFERENCES:
            cls, name = test_id.split("::")
            named = f"``{name}``" in documented and name != "test"
            assert named or f"``{cls}``" in documented, f"{test_id} is not in migrating.rst"

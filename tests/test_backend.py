"""``mailer.backend.DbBackend``: whatever Django sends through it is queued, then delivered."""

from __future__ import annotations

import datetime
import logging
import sys
import warnings
from typing import Any

import django
import pytest
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from django.utils import timezone
from django.utils.log import AdminEmailHandler

from mailer.backend import DbBackend
from mailer.engine import send_all
from mailer.exceptions import (
    DeliveryBackendLoop,
    InvalidHeader,
    InvalidPriority,
    MailerConfigurationError,
)
from mailer.models import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    DontSendEntry,
    Message,
    MessageLog,
)

from .assertions import MailAssertions, find, statements
from .samples import batch, html, non_ascii, plain, token_of
from .smtp import SMTPServer

pytestmark = pytest.mark.django_db

# DJANGO_COMPAT(<6.1): Django 5.2's mail_admins takes only (name, address) pairs, and
# Django 6.1 deprecates them in favour of plain addresses.
ADMINS: list[Any] = (
    ["ada@example.com", "bob@example.com"]
    if django.VERSION >= (6, 1)
    else [("Ada", "ada@example.com"), ("Bob", "bob@example.com")]
)


# The password-reset mail links to these views (used through @pytest.mark.urls).
urlpatterns = [path("accounts/", include("django.contrib.auth.urls"))]


def smtp_backend(port: int) -> dict[str, Any]:
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 10},
    }


def queued_through(alias: str, **options: Any) -> dict[str, Any]:
    return {"BACKEND": "mailer.backend.DbBackend", "OPTIONS": {"mailer": alias, **options}}


class TestQueuesWhatDjangoSends(MailAssertions):
    def test_send_mail_is_queued_then_delivered(self, smtp: SMTPServer) -> None:
        self.server = smtp
        message = plain()
        assert mail.send_mail(message.subject, message.body, None, ["alice@example.com"]) == 1
        self.assert_queued(1)
        self.assert_not_delivered(message)
        send_all()
        self.assert_delivered_once(message)
        self.assert_queue_empty()

    def test_emailmessage_send_is_queued_with_all_it_carries(self, smtp: SMTPServer) -> None:
        self.server = smtp
        message = non_ascii()
        assert message.send() == 1
        send_all()
        received = self.assert_delivered_once(message)
        assert sorted(received.rcpt_tos) == [
            "cc@example.com",
            "hidden@example.com",
            "zoe@example.com",
        ]
        assert received.message["X-Campaign"] == "spring-été"
        assert "Bcc" not in received.message

    def test_send_mass_mail_is_one_insert(self) -> None:
        data = [(f"S{i}", "B", "f@example.com", [f"r{i}@example.com"]) for i in range(30)]
        with CaptureQueriesContext(connection) as queries:
            assert mail.send_mass_mail(data) == 30
        assert len(statements(queries, "INSERT")) == 1
        self.assert_queued(30)

    def test_mail_admins_is_queued(self, settings: Any) -> None:
        settings.ADMINS = ADMINS
        mail.mail_admins("Disk full", "Details")
        row = Message.objects.get()
        assert row.to_addresses == ["ada@example.com", "bob@example.com"]
        assert row.subject == "[Django] Disk full"

    @pytest.mark.urls(__name__)
    def test_password_reset_mail_is_queued(self) -> None:
        User.objects.create_user("ada", "ada@example.com", "a long password")
        form = PasswordResetForm({"email": "ada@example.com"})
        assert form.is_valid()
        form.save(domain_override="example.com")
        row = Message.objects.get()
        assert row.to_addresses == ["ada@example.com"]
        assert row.email is not None and "example.com/accounts/reset/" in str(row.email.body)

    def test_admin_email_handler_mail_is_queued(self, settings: Any) -> None:
        settings.ADMINS = ADMINS
        logger = logging.getLogger("tests.admin_email_handler")
        handler = AdminEmailHandler()
        logger.addHandler(handler)
        try:
            try:
                raise ZeroDivisionError("the error being reported")
            except ZeroDivisionError:
                logger.error("Internal Server Error: /checkout/", exc_info=sys.exc_info())
        finally:
            logger.removeHandler(handler)
        row = Message.objects.get()
        assert row.to_addresses == ["ada@example.com", "bob@example.com"]
        assert "Internal Server Error: /checkout/" in row.subject
        assert row.email is not None and "the error being reported" in str(row.email.body)

    def test_returns_the_number_queued(self) -> None:
        assert DbBackend().send_messages(batch(3)) == 3

    def test_queues_nothing_for_nothing(self) -> None:
        with CaptureQueriesContext(connection) as queries:
            assert DbBackend().send_messages([]) == 0
        assert queries.captured_queries == []

    def test_inserts_in_batches_of_mailer_messages_batch_size(self, settings: Any) -> None:
        settings.MAILER_MESSAGES_BATCH_SIZE = 10
        with CaptureQueriesContext(connection) as queries:
            assert DbBackend().send_messages(batch(25)) == 25
        assert len(statements(queries, "INSERT")) == 3
        self.assert_queued(25)

    def test_is_all_or_nothing_for_one_call(self) -> None:
        broken = plain()
        broken.subject = "Line\nbreak"
        with pytest.raises(InvalidHeader):
            DbBackend().send_messages([plain(), broken, plain()])
        self.assert_nothing_queued()

    def test_with_fail_silently_queues_what_it_can(self, caplog: Any) -> None:
        broken = plain()
        broken.subject = "Line\nbreak"
        good = plain()
        with caplog.at_level(logging.WARNING, logger="mailer.backend"):
            assert DbBackend(fail_silently=True).send_messages([broken, good]) == 1
        find(token_of(good))
        assert "not queued" in caplog.text


class TestDontSendList(MailAssertions):
    def test_removes_blocked_to_cc_and_bcc_in_any_case_and_delivers_to_the_rest(
        self, smtp: SMTPServer
    ) -> None:
        self.server = smtp
        for address in ("TO-blocked@example.com", "cc-blocked@EXAMPLE.com", "bcc-blocked@x.org"):
            DontSendEntry.objects.create(to_address=address)
        message = plain(
            ["to-blocked@example.com", "Alice <alice@example.com>"],
            cc=["CC-Blocked@example.com", "carol@example.com"],
            bcc=["bcc-blocked@X.ORG", "dave@example.com"],
        )
        assert message.send() == 1
        stored = find(token_of(message)).summary
        assert (stored["to"], stored["cc"], stored["bcc"]) == (
            ["Alice <alice@example.com>"],
            ["carol@example.com"],
            ["dave@example.com"],
        )
        send_all()
        received = self.assert_delivered_once(message)
        assert sorted(received.rcpt_tos) == [
            "alice@example.com",
            "carol@example.com",
            "dave@example.com",
        ]

    def test_is_looked_up_once_for_a_whole_batch(self) -> None:
        DontSendEntry.objects.create(to_address="blocked@example.com")
        messages = [
            plain([f"to{i}@example.com", "blocked@example.com"], cc=[f"cc{i}@example.com"])
            for i in range(40)
        ]
        with CaptureQueriesContext(connection) as queries:
            assert DbBackend().send_messages(messages) == 40
        assert len(statements(queries, "SELECT", "mailer_dontsendentry")) == 1

    def test_a_message_left_without_recipients_is_not_queued_but_logged(self) -> None:
        DontSendEntry.objects.create(to_address="gone@example.com")
        skipped = plain(["Gone@Example.com"])
        kept = plain()
        assert DbBackend().send_messages([skipped, kept]) == 1
        self.assert_queued(1)
        find(token_of(kept))
        log = MessageLog.objects.get()
        assert log.result == RESULT_DONT_SEND
        assert [entry[0] for entry in log.recipients] == ["Gone@Example.com"]


class TestPriority(MailAssertions):
    def test_is_the_default_priority_without_options(self) -> None:
        message = plain()
        message.send()
        self.assert_queued_as(message, priority=PRIORITY_MEDIUM)

    def test_is_a_backend_option(self) -> None:
        message = plain()
        DbBackend(priority="high").send_messages([message])
        self.assert_queued_as(message, priority=PRIORITY_HIGH)

    def test_get_connection_passes_the_priority_option(self, legacy_style: None) -> None:
        message = plain()
        backend = mail.get_connection("mailer.backend.DbBackend", priority="low")
        backend.send_messages([message])
        self.assert_queued_as(message, priority=PRIORITY_LOW)

    def test_is_an_option_of_a_mailers_alias(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smtp", priority="low")}
        message = plain()
        message.send()
        self.assert_queued_as(message, priority=PRIORITY_LOW, mailer="smtp")

    def test_an_x_mailer_priority_header_wins_and_is_not_stored_or_sent(
        self, smtp: SMTPServer
    ) -> None:
        self.server = smtp
        message = html()
        message.extra_headers["X-Mailer-Priority"] = "high"
        DbBackend(priority="low").send_messages([message])
        row = self.assert_queued_as(message, priority=PRIORITY_HIGH)
        assert "x-mailer-priority" not in row.message_data.lower()
        send_all()
        assert "X-Mailer-Priority" not in self.assert_delivered_once(message).message

    def test_schedule_headers_set_send_at_and_expires_at_and_are_removed(self) -> None:
        message = plain()
        message.extra_headers["X-Mailer-Send-At"] = "2030-01-01T09:00:00+00:00"
        message.extra_headers["x-mailer-expires-at"] = "2030-01-02T09:00:00+00:00"
        message.send()
        row = find(token_of(message))
        assert row.due_at == datetime.datetime(2030, 1, 1, 9, tzinfo=datetime.UTC)
        assert row.expires_at == datetime.datetime(2030, 1, 2, 9, tzinfo=datetime.UTC)
        assert row.state == "scheduled"
        assert "x-mailer" not in row.message_data.lower()

    def test_a_bad_priority_header_is_refused(self) -> None:
        message = plain()
        message.extra_headers["X-Mailer-Priority"] = "urgent"
        with pytest.raises(InvalidPriority):
            message.send()
        self.assert_nothing_queued()

    def test_a_bad_send_at_header_is_refused(self) -> None:
        message = plain()
        message.extra_headers["X-Mailer-Send-At"] = "tomorrow"
        with pytest.raises(InvalidHeader, match="X-Mailer-Send-At"):
            message.send()
        self.assert_nothing_queued()

    def test_a_bad_priority_option_is_refused(self) -> None:
        with pytest.raises(InvalidPriority):
            DbBackend(priority="urgent")

    def test_a_bad_priority_option_in_mailers_names_the_setting(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smtp", priority=9)}
        with pytest.raises(MailerConfigurationError, match=r"MAILERS\['default'\]\['OPTIONS'\]"):
            plain().send()


class TestMailers(MailAssertions):
    """Django 6.1's MAILERS: each queued message is delivered through the alias it names."""

    def test_two_aliases_deliver_to_two_servers(
        self,
        mailers_style: dict[str, Any],
        settings: Any,
        smtp_server: SMTPServer,
        second_smtp_server: SMTPServer,
    ) -> None:
        smtp_server.reset()
        second_smtp_server.reset()
        settings.MAILERS = {
            "default": queued_through("smtp"),
            "urgent": queued_through("transactional", priority="high"),
            "smtp": smtp_backend(smtp_server.port),
            "transactional": smtp_backend(second_smtp_server.port),
        }
        newsletter, receipt = plain(), plain()
        assert newsletter.send() == 1
        assert receipt.send(using="urgent") == 1
        self.assert_queued_as(newsletter, mailer="smtp", priority=PRIORITY_MEDIUM)
        self.assert_queued_as(receipt, mailer="transactional", priority=PRIORITY_HIGH)

        assert send_all().sent == 2

        self.server = smtp_server
        self.assert_delivered_once(newsletter)
        self.assert_not_delivered(receipt)
        self.server = second_smtp_server
        self.assert_delivered_once(receipt)
        self.assert_not_delivered(newsletter)
        self.assert_queue_empty()

    def test_the_alias_is_remembered_in_the_log(
        self, mailers_style: dict[str, Any], smtp: SMTPServer
    ) -> None:
        self.server = smtp
        message = plain()
        message.send()
        send_all()
        self.assert_delivered_once(message)
        assert MessageLog.objects.get().mailer == "smtp"

    def test_sending_raises_no_warning(self, settings: Any) -> None:
        """Run in this Django's default style: MAILERS on 6.1, EMAIL_BACKEND before."""
        settings.ADMINS = ADMINS
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain().send()
            mail.send_mail("S", "B", None, ["t@example.com"])
            mail.send_mass_mail([("S", "B", None, ["t@example.com"])])
            mail.mail_admins("S", "B")
        assert [str(w.message) for w in caught] == []
        self.assert_queued(4)

    @pytest.mark.parametrize("target", ["default", "other"])
    def test_delivering_through_a_dbbackend_is_refused(
        self, mailers_style: dict[str, Any], settings: Any, target: str
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "default": queued_through(target),
            "other": queued_through("smtp"),
        }
        with pytest.raises(DeliveryBackendLoop, match=r"MAILERS\['default'\]\['OPTIONS'\]"):
            plain().send()
        self.assert_nothing_queued()

    def test_a_dbbackend_alias_must_name_who_delivers(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {**mailers_style, "default": {"BACKEND": "mailer.backend.DbBackend"}}
        with pytest.raises(MailerConfigurationError, match="must name the alias"):
            plain().send()

    def test_a_dbbackend_alias_must_name_an_existing_alias(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smpt")}
        with pytest.raises(MailerConfigurationError, match="'smpt', but MAILERS has no such"):
            plain().send()

    def test_an_unknown_option_is_refused_by_django(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {**mailers_style, "default": queued_through("smtp", priorty="high")}
        with pytest.raises(ImproperlyConfigured, match="priorty"):
            plain().send()


class TestEmailBackendStyle(MailAssertions):
    """EMAIL_BACKEND + MAILER_EMAIL_BACKEND, on every supported Django."""

    def test_mail_is_queued_then_delivered_by_mailer_email_backend(
        self, legacy_style: None, settings: Any, smtp_server: SMTPServer
    ) -> None:
        self.server = smtp_server
        smtp_server.reset()
        settings.EMAIL_PORT = smtp_server.port
        message = plain()
        assert message.send() == 1
        self.assert_queued_as(message, mailer="")
        send_all()
        self.assert_delivered_once(message)

    def test_mailer_email_backend_may_be_any_backend(
        self, legacy_style: None, settings: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        mail.outbox = []
        message = plain()
        message.send()
        assert mail.outbox == []
        send_all()
        assert [m.subject for m in mail.outbox] == [message.subject]

    def test_delivering_through_dbbackend_is_refused(
        self, legacy_style: None, settings: Any
    ) -> None:
        settings.MAILER_EMAIL_BACKEND = "mailer.backend.DbBackend"
        with pytest.raises(DeliveryBackendLoop, match="MAILER_EMAIL_BACKEND"):
            plain().send()
        self.assert_nothing_queued()

    def test_the_loop_error_is_improperly_configured(self) -> None:
        assert issubclass(DeliveryBackendLoop, ImproperlyConfigured)

    def test_the_mailer_option_needs_mailers(self, legacy_style: None) -> None:
        with pytest.raises(MailerConfigurationError, match="MAILERS is not configured"):
            DbBackend(mailer="smtp")


def test_queued_mail_keeps_its_html_alternative() -> None:
    message = EmailMultiAlternatives("S", "Text", "f@example.com", ["t@example.com"])
    message.attach_alternative("<p>HTML</p>", "text/html")
    DbBackend().send_messages([message])
    stored = Message.objects.get().email
    assert isinstance(stored, EmailMultiAlternatives)
    assert stored.alternatives[0][0] == "<p>HTML</p>"


def test_queued_mail_joins_the_callers_transaction() -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        EmailMessage("S", "B", "f@example.com", ["t@example.com"]).send()
        raise RuntimeError("rolled back")
    assert Message.objects.count() == 0


def test_a_due_time_in_the_past_means_now() -> None:
    message = plain()
    message.extra_headers["X-Mailer-Send-At"] = "2000-01-01T00:00:00+00:00"
    message.send()
    row = find(token_of(message))
    assert row.due_at is not None and row.due_at <= timezone.now()
    assert row.state == "queued"

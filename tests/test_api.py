"""The public API, ``mailer.send_mail`` and friends, as docs/usage.rst and README.md describe it."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.translation import gettext_lazy

import mailer
from mailer import mail_admins, mail_managers, send_html_mail, send_mail, send_mass_mail
from mailer.backend import DbBackend
from mailer.engine import send_all
from mailer.exceptions import (
    InvalidAddress,
    InvalidHeader,
    InvalidMessage,
    InvalidPriority,
    InvalidRecipientList,
    InvalidSchedule,
    MailerConfigurationError,
)
from mailer.models import (
    PRIORITY_DEFERRED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    RESULT_DONT_SEND,
    DontSendEntry,
    Message,
    MessageLog,
    Status,
)

from .assertions import MailAssertions, find, statements
from .samples import token

pytestmark = pytest.mark.django_db


def titled() -> tuple[str, str]:
    """A subject carrying a fresh token (so the SMTP server can tell messages apart), and it."""
    tok = token()
    return f"Hello {tok}", tok


class TestSendMail(MailAssertions):
    def test_queues_one_message_returns_one_and_it_is_delivered(self, smtp: Any) -> None:
        self.server = smtp
        title, tok = titled()
        assert send_mail(title, "Body", "from@example.com", ["to@example.com"]) == 1
        self.assert_queued(1)
        send_all()
        received = self.assert_delivered_once(tok)
        assert received.rcpt_tos == ["to@example.com"]
        assert received.message["Subject"] == title
        self.assert_queue_empty()

    def test_has_djangos_signature_with_html_message(self, smtp: Any) -> None:
        self.server = smtp
        title, tok = titled()
        send_mail(title, "Text body", None, ["to@example.com"], html_message="<p>HTML body</p>")
        send_all()
        received = self.assert_delivered_once(tok).message
        assert received["From"] == "site@example.com"  # DEFAULT_FROM_EMAIL, as in Django
        html = received.get_body(("html",))
        assert html is not None and "<p>HTML body</p>" in html.get_content()
        assert "Text body" in received.get_body(("plain",)).get_content()

    def test_takes_priority_as_fifth_positional_argument_like_django_mailer(self) -> None:
        title, tok = titled()
        send_mail(title, "Body", "from@example.com", ["to@example.com"], PRIORITY_HIGH)
        self.assert_queued_as(tok, priority=PRIORITY_HIGH, status=Status.QUEUED)

    @pytest.mark.parametrize(
        ("name", "value"),
        [("high", PRIORITY_HIGH), ("medium", PRIORITY_MEDIUM), ("low", PRIORITY_LOW)],
    )
    def test_takes_a_priority_by_name(self, name: str, value: int) -> None:
        title, tok = titled()
        send_mail(title, "Body", "from@example.com", ["to@example.com"], priority=name)
        self.assert_queued_as(tok, priority=value)

    def test_queues_at_medium_priority_by_default(self) -> None:
        title, tok = titled()
        send_mail(title, "Body", "from@example.com", ["to@example.com"])
        self.assert_queued_as(tok, priority=PRIORITY_MEDIUM)

    def test_default_priority_follows_the_setting(self, settings: Any) -> None:
        settings.MAILER_DEFAULT_PRIORITY = "low"
        title, tok = titled()
        send_mail(title, "Body", "from@example.com", ["to@example.com"])
        self.assert_queued_as(tok, priority=PRIORITY_LOW)

    @pytest.mark.parametrize("priority", ["deferred", PRIORITY_DEFERRED])
    def test_deferred_priority_holds_the_message_until_retry_deferred(
        self, smtp: Any, priority: Any
    ) -> None:
        self.server = smtp
        title, tok = titled()
        assert send_mail(title, "Body", "f@example.com", ["to@example.com"], priority) == 1
        row = self.assert_queued_as(tok, status=Status.DEFERRED)
        assert row.due_at is None and row.state == "held"
        send_all()
        self.assert_not_delivered(tok)
        assert Message.objects.retry_deferred() == 1
        send_all()
        self.assert_delivered_once(tok)

    def test_a_bool_in_fifth_place_is_djangos_fail_silently(self) -> None:
        title, tok = titled()
        assert send_mail(title, "Body", "from@example.com", ["to@example.com"], True) == 1
        self.assert_queued_as(tok, priority=PRIORITY_MEDIUM)

    def test_takes_djangos_full_positional_order(self) -> None:
        title, tok = titled()
        backend = DbBackend(priority="low")
        queued = send_mail(
            title, "Text", "f@example.com", ["to@example.com"], False, None, None, backend, "<b>x"
        )
        assert queued == 1
        row = self.assert_queued_as(tok, priority=PRIORITY_LOW)
        assert row.email is not None
        assert [mime for _, mime in row.email.alternatives] == ["text/html"]  # type: ignore[attr-defined]

    def test_refuses_too_many_positional_arguments(self) -> None:
        with pytest.raises(TypeError, match="at most 8 positional"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], 1, False, None, None, "x")
        self.assert_nothing_queued()

    def test_refuses_a_priority_given_twice(self) -> None:
        with pytest.raises(TypeError, match="multiple values for argument 'priority'"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], "high", priority="low")

    def test_a_dbbackend_connection_gives_its_priority(self) -> None:
        title, tok = titled()
        send_mail(title, "B", "f@example.com", ["t@example.com"], connection=DbBackend(priority=1))
        self.assert_queued_as(tok, priority=PRIORITY_HIGH)

    def test_an_explicit_priority_beats_the_connections(self) -> None:
        title, tok = titled()
        backend = DbBackend(priority="high")
        send_mail(title, "B", "f@example.com", ["t@example.com"], "low", connection=backend)
        self.assert_queued_as(tok, priority=PRIORITY_LOW)

    @pytest.mark.parametrize("priority", [0, 5, "urgent", True, 1.0, ""])
    def test_refuses_an_unknown_priority(self, priority: Any) -> None:
        with pytest.raises(InvalidPriority):
            send_mail("S", "B", "f@example.com", ["t@example.com"], priority=priority)
        self.assert_nothing_queued()

    def test_refuses_a_plain_string_as_recipient_list(self) -> None:
        with pytest.raises(InvalidRecipientList):
            send_mail("S", "B", "f@example.com", "t@example.com")  # type: ignore[arg-type]
        self.assert_nothing_queued()

    def test_refuses_a_line_break_in_the_subject(self) -> None:
        with pytest.raises(InvalidHeader):
            send_mail("S\nBcc: victim@example.com", "B", "f@example.com", ["t@example.com"])
        self.assert_nothing_queued()

    def test_refuses_a_malformed_address(self) -> None:
        with pytest.raises(InvalidAddress):
            send_mail("S", "B", "f@example.com", ["not an address@"])
        self.assert_nothing_queued()

    def test_every_refusal_is_a_value_error_too(self) -> None:
        with pytest.raises(ValueError):
            send_mail("S", "B", "f@example.com", [None])  # type: ignore[list-item]

    def test_keeps_extra_headers(self) -> None:
        title, tok = titled()
        send_mail(title, "B", "f@example.com", ["t@example.com"], headers={"X-Tag": "welcome"})
        email = find(tok).email
        assert email is not None and email.extra_headers["X-Tag"] == "welcome"

    def test_accepts_a_lazy_subject(self) -> None:
        assert send_mail(gettext_lazy("Welcome"), "B", "f@example.com", ["t@example.com"]) == 1
        assert Message.objects.get().subject == "Welcome"

    def test_joins_the_callers_transaction(self) -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            send_mail("S", "B", "f@example.com", ["t@example.com"])
            raise RuntimeError("the view failed")
        self.assert_nothing_queued()

    def test_removes_recipients_on_the_dont_send_list(self) -> None:
        DontSendEntry.objects.create(to_address="Blocked@Example.com")
        title, tok = titled()
        queued = send_mail(title, "B", "f@example.com", ["blocked@example.com", "ok@example.com"])
        assert queued == 1
        assert find(tok).to_addresses == ["ok@example.com"]

    def test_queues_nothing_when_every_recipient_is_on_the_dont_send_list(self) -> None:
        DontSendEntry.objects.create(to_address="blocked@example.com")
        assert send_mail("S", "B", "f@example.com", ["BLOCKED@example.com"]) == 0
        self.assert_nothing_queued()
        log = MessageLog.objects.get()
        assert log.result == RESULT_DONT_SEND


class TestSchedule(MailAssertions):
    def test_send_at_holds_the_message_until_then(self, smtp: Any) -> None:
        self.server = smtp
        title, tok = titled()
        later = timezone.now() + datetime.timedelta(hours=1)
        send_mail(title, "B", "f@example.com", ["t@example.com"], send_at=later)
        row = self.assert_queued_as(tok, status=Status.QUEUED)
        assert row.due_at == later and row.state == "scheduled"
        send_all()
        self.assert_not_delivered(tok)
        Message.objects.update(due_at=timezone.now())  # time passes
        send_all()
        self.assert_delivered_once(tok)

    def test_expires_at_is_stored(self) -> None:
        title, tok = titled()
        until = timezone.now() + datetime.timedelta(days=1)
        send_mail(title, "B", "f@example.com", ["t@example.com"], expires_at=until)
        assert find(tok).expires_at == until

    def test_a_naive_send_at_is_in_the_current_time_zone(self) -> None:
        naive = datetime.datetime(2030, 1, 1, 9, 0)
        with timezone.override("Europe/Berlin"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], send_at=naive)
        due = Message.objects.get().due_at
        assert due == datetime.datetime(2030, 1, 1, 8, 0, tzinfo=datetime.UTC)

    @pytest.mark.parametrize("value", ["2030-01-01T09:00", datetime.date(2030, 1, 1), 3600])
    def test_send_at_must_be_a_datetime(self, value: Any) -> None:
        with pytest.raises(InvalidSchedule, match="send_at must be a datetime"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], send_at=value)
        self.assert_nothing_queued()

    def test_refuses_a_message_that_would_expire_before_it_is_sent(self) -> None:
        start = timezone.now() + datetime.timedelta(days=2)
        with pytest.raises(InvalidSchedule, match="could never be sent"):
            send_mail(
                "S",
                "B",
                "f@example.com",
                ["t@example.com"],
                send_at=start,
                expires_at=start - datetime.timedelta(days=1),
            )
        with pytest.raises(InvalidSchedule):
            send_mail(
                "S",
                "B",
                "f@example.com",
                ["t@example.com"],
                expires_at=timezone.now() - datetime.timedelta(seconds=1),
            )
        self.assert_nothing_queued()

    def test_invalid_schedule_is_an_invalid_message(self) -> None:
        assert issubclass(InvalidSchedule, InvalidMessage)


class TestSendHtmlMail(MailAssertions):
    def test_delivers_text_and_html_alternatives(self, smtp: Any) -> None:
        self.server = smtp
        title, tok = titled()
        queued = send_html_mail(
            title, "Text body", "<p>HTML body</p>", "news@example.com", ["to@example.com"]
        )
        assert queued == 1
        send_all()
        received = self.assert_delivered_once(tok).message
        assert "Text body" in received.get_body(("plain",)).get_content()
        assert "<p>HTML body</p>" in received.get_body(("html",)).get_content()

    def test_takes_priority_and_headers_in_django_mailers_order(self) -> None:
        title, tok = titled()
        send_html_mail(
            title,
            "Text",
            "<p>HTML</p>",
            "f@example.com",
            ["t@example.com"],
            PRIORITY_LOW,
            False,
            None,
            None,
            {"Reply-To": "help@example.com"},
        )
        row = self.assert_queued_as(tok, priority=PRIORITY_LOW)
        assert row.email is not None and row.email.extra_headers == {
            "Reply-To": "help@example.com",
            "Message-ID": row.stored_message_id,
        }

    def test_schedules_like_send_mail(self) -> None:
        later = timezone.now() + datetime.timedelta(minutes=5)
        send_html_mail("S", "T", "<p>H</p>", "f@example.com", ["t@example.com"], send_at=later)
        assert Message.objects.get().due_at == later


class TestSendMassMail(MailAssertions):
    def test_queues_every_message_with_one_insert(self, smtp: Any) -> None:
        self.server = smtp
        titles = [titled() for _ in range(25)]
        data = [
            (t, "Body", "f@example.com", [f"r{i}@example.com"]) for i, (t, _) in enumerate(titles)
        ]
        with CaptureQueriesContext(connection) as queries:
            assert send_mass_mail(data) == 25
        assert len(statements(queries, "INSERT")) == 1
        self.assert_queued(25)
        send_all()
        self.assert_each_delivered_once([tok for _, tok in titles])

    def test_inserts_in_batches_of_mailer_messages_batch_size(self, settings: Any) -> None:
        settings.MAILER_MESSAGES_BATCH_SIZE = 10
        data = [("S", "B", "f@example.com", ["t@example.com"])] * 25
        with CaptureQueriesContext(connection) as queries:
            assert send_mass_mail(data) == 25
        assert len(statements(queries, "INSERT")) == 3

    def test_queues_none_if_any_message_is_invalid(self) -> None:
        data = [
            ("Fine", "B", "f@example.com", ["t@example.com"]),
            ("Broken", "B", "f@example.com", "t@example.com"),
        ]
        with pytest.raises(InvalidRecipientList):
            send_mass_mail(data)  # type: ignore[arg-type]
        self.assert_nothing_queued()

    def test_takes_a_priority(self) -> None:
        send_mass_mail([("S", "B", "f@example.com", ["t@example.com"])] * 2, priority="high")
        assert list(Message.objects.values_list("priority", flat=True)) == [PRIORITY_HIGH] * 2

    def test_looks_up_the_dont_send_list_once(self) -> None:
        DontSendEntry.objects.create(to_address="blocked@example.com")
        data = [("S", "B", "f@example.com", [f"r{i}@example.com"]) for i in range(20)]
        data.append(("S", "B", "f@example.com", ["blocked@example.com"]))
        with CaptureQueriesContext(connection) as queries:
            assert send_mass_mail(data) == 20
        assert len(statements(queries, "SELECT", "mailer_dontsendentry")) == 1


class TestMailAdminsAndManagers(MailAssertions):
    def test_mail_admins_sends_to_admins_from_server_email_with_the_prefix(
        self, smtp: Any, settings: Any
    ) -> None:
        self.server = smtp
        settings.EMAIL_SUBJECT_PREFIX = "[site] "
        title, tok = titled()
        assert mail_admins(title, "Something broke") == 1
        send_all()
        received = self.assert_delivered_once(tok)
        assert sorted(received.rcpt_tos) == ["ada@example.com", "bob@example.com"]
        assert received.message["Subject"] == f"[site] {title}"
        assert received.message["From"] == "server@example.com"

    @pytest.mark.parametrize(
        "admins",
        [
            [("Ada", "ada@example.com")],
            [["Ada", "ada@example.com"]],
            ["ada@example.com"],
            ("ada@example.com",),
        ],
    )
    def test_admins_may_be_pairs_or_plain_addresses(self, settings: Any, admins: Any) -> None:
        settings.ADMINS = admins
        assert mail_admins("S", "B") == 1
        assert Message.objects.get().to_addresses == ["ada@example.com"]

    def test_mail_managers_sends_to_managers(self, settings: Any) -> None:
        settings.MANAGERS = ["carol@example.com", ("Dan", "dan@example.com")]
        assert mail_managers("S", "B") == 1
        assert Message.objects.get().to_addresses == ["carol@example.com", "dan@example.com"]

    @pytest.mark.parametrize("function", [mail_admins, mail_managers])
    @pytest.mark.parametrize("empty", [[], (), None])
    def test_queue_nothing_when_the_list_is_empty(
        self, settings: Any, function: Any, empty: Any
    ) -> None:
        settings.ADMINS = settings.MANAGERS = empty
        assert function("S", "B") == 0
        self.assert_nothing_queued()

    @pytest.mark.parametrize("function", [mail_admins, mail_managers])
    def test_honour_the_priority(self, function: Any) -> None:
        function("S", "B", priority="high")
        assert Message.objects.get().priority == PRIORITY_HIGH

    @pytest.mark.parametrize("function", [mail_admins, mail_managers])
    def test_take_priority_as_fifth_positional_argument_like_django_mailer(
        self, function: Any
    ) -> None:
        function("S", "B", False, None, PRIORITY_LOW)
        row = Message.objects.get()
        assert row.priority == PRIORITY_LOW
        assert row.email is not None and not row.email.alternatives  # type: ignore[attr-defined]

    @pytest.mark.parametrize("function", [mail_admins, mail_managers])
    def test_take_html_message_as_fifth_positional_argument_like_django(
        self, function: Any
    ) -> None:
        function("S", "Text", False, None, "<p>HTML</p>")
        row = Message.objects.get()
        assert row.priority == PRIORITY_MEDIUM
        assert row.email is not None
        assert row.email.alternatives[0][0] == "<p>HTML</p>"  # type: ignore[attr-defined]

    def test_refuse_an_unknown_priority_even_with_nobody_to_mail(self, settings: Any) -> None:
        settings.ADMINS = []
        with pytest.raises(InvalidPriority):
            mail_admins("S", "B", priority="urgent")

    @pytest.mark.parametrize("admins", ["ada@example.com", [("Ada",)], [42]])
    def test_refuse_a_malformed_setting(self, settings: Any, admins: Any) -> None:
        settings.ADMINS = admins
        with pytest.raises(MailerConfigurationError, match="ADMINS"):
            mail_admins("S", "B")
        self.assert_nothing_queued()


class TestDeliveryAlias(MailAssertions):
    """Which backend delivers mail queued through the API: ``using`` and ``connection``."""

    def test_in_the_email_backend_style_mailer_email_backend_delivers(
        self, legacy_style: None
    ) -> None:
        send_mail("S", "B", "f@example.com", ["t@example.com"])
        assert Message.objects.get().mailer == ""

    def test_in_the_email_backend_style_only_the_default_alias_exists(
        self, legacy_style: None
    ) -> None:
        assert send_mail("S", "B", "f@example.com", ["t@example.com"], using="default") == 1
        with pytest.raises(MailerConfigurationError, match="MAILERS"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], using="smtp")

    def test_with_mailers_the_default_alias_names_who_delivers(
        self, mailers_style: dict[str, Any]
    ) -> None:
        send_mail("S", "B", "f@example.com", ["t@example.com"])
        assert Message.objects.get().mailer == "smtp"

    def test_using_a_dbbackend_alias_takes_its_mailer_and_priority(
        self, mailers_style: dict[str, Any], settings: Any
    ) -> None:
        settings.MAILERS = {
            **mailers_style,
            "urgent": {
                "BACKEND": "mailer.backend.DbBackend",
                "OPTIONS": {"mailer": "smtp2", "priority": "high"},
            },
            "smtp2": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
        }
        title, tok = titled()
        send_mail(title, "B", "f@example.com", ["t@example.com"], using="urgent")
        self.assert_queued_as(tok, mailer="smtp2", priority=PRIORITY_HIGH)

    def test_using_a_sending_alias_queues_for_it(self, mailers_style: dict[str, Any]) -> None:
        send_mail("S", "B", "f@example.com", ["t@example.com"], using="smtp")
        assert Message.objects.get().mailer == "smtp"

    def test_using_an_unknown_alias_is_refused(self, mailers_style: dict[str, Any]) -> None:
        with pytest.raises(MailerConfigurationError, match="nowhere"):
            send_mail("S", "B", "f@example.com", ["t@example.com"], using="nowhere")
        self.assert_nothing_queued()

    def test_using_and_connection_together_are_refused(self) -> None:
        backend = DbBackend()
        with pytest.raises(TypeError, match="not compatible"):
            send_mail(
                "S", "B", "f@example.com", ["t@example.com"], using="default", connection=backend
            )


def test_the_public_names_are_exported() -> None:
    assert sorted(mailer.__all__) == [
        "mail_admins",
        "mail_managers",
        "send_html_mail",
        "send_mail",
        "send_mass_mail",
    ]

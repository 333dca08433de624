"""Idempotency keys: a message queued with a key already used within the window is not queued.

As docs/guarantees.rst says under "Idempotency keys": whatever process queues
it, whether or not the first message was delivered since, until the window
has passed; and a key is released when the transaction that used it rolls back.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

import mailer
from mailer import mail_admins, mail_managers, send_html_mail, send_mail, send_mass_mail
from mailer.backend import DbBackend
from mailer.engine import send_all
from mailer.exceptions import InvalidIdempotencyKey, InvalidMessage, MailerError
from mailer.models import IdempotencyKey, Message, MessageLog
from mailer.queue import enqueue, idempotency

from . import processes
from .assertions import MailAssertions, statements
from .racing import Race, lock_waiters
from .samples import keyed, plain, token_of
from .test_admin import LIST, LOG_LIST, rows, text

pytestmark = pytest.mark.django_db

HEADER = "X-Mailer-Idempotency-Key"
WINDOW = 7 * 24 * 3600
KEYS = "mailer_idempotencykey"


def receipt(key: str | None = None, **kwargs: Any) -> int:
    """``mailer.send_mail`` of an order's receipt, with ``key``; what it returned."""
    return send_mail(
        "Your receipt", "Thanks!", None, ["buyer@example.com"], idempotency_key=key, **kwargs
    )


def mass(*keys: str | None) -> tuple[int, list[str]]:
    """``send_mass_mail`` of one message per key (None: no key); what it returned, the subjects."""
    subjects = [f"Mass {n} {token_of(plain())}" for n in range(len(keys))]
    datatuple = [
        (subject, "Body", None, ["to@example.com"], key)
        for subject, key in zip(subjects, keys, strict=True)
    ]
    return send_mass_mail(datatuple), subjects


def age_keys(seconds: float) -> None:
    """Make every key as if it had been used ``seconds`` earlier."""
    IdempotencyKey.objects.update(used_at=F("used_at") - datetime.timedelta(seconds=seconds))


class TestOncePerKey(MailAssertions):
    def test_a_second_message_with_the_key_is_not_queued_and_a_duplicate_is_logged(
        self, caplog: Any
    ) -> None:
        with caplog.at_level(logging.INFO, logger="mailer.queue"):
            assert receipt("receipt-1024") == 1
            assert receipt("receipt-1024") == 0
        self.assert_queued_once_with_key("receipt-1024")
        self.assert_duplicates_logged(caplog.records, "receipt-1024", times=1)
        assert IdempotencyKey.objects.count() == 1

    def test_other_keys_and_no_key_are_queued_as_usual(self) -> None:
        assert receipt("receipt-1") == 1
        assert receipt("receipt-2") == 1
        assert receipt() == 1
        assert receipt() == 1
        self.assert_queued(4)

    def test_keys_are_exact_on_every_database(self) -> None:
        """MariaDB's usual collations ignore case and trailing spaces: keys must not."""
        for key in ("Order-7", "order-7", "order-7 ", " order-7", "orde\u0301r-7", "ordér-7"):
            assert receipt(key) == 1, key
        assert receipt("order-7") == 0

    def test_holds_after_the_first_was_delivered_and_left_the_queue(self, smtp: Any) -> None:
        self.server = smtp
        first = keyed("shipped-77")
        assert first.send() == 1
        send_all()
        self.assert_delivered_once(first)
        self.assert_queue_empty()
        again = keyed("shipped-77")
        assert again.send() == 0
        assert receipt("shipped-77") == 0
        send_all()
        self.assert_not_delivered(again)
        (log,) = MessageLog.objects.all()
        assert log.idempotency_key == "shipped-77"

    @pytest.mark.parametrize(
        "function",
        [
            lambda key: send_mail("S", "B", None, ["to@example.com"], idempotency_key=key),
            lambda key: send_mail("S", "B", None, ["to@example.com"], "high", idempotency_key=key),
            lambda key: send_html_mail(
                "S", "B", "<p>B</p>", None, ["to@example.com"], idempotency_key=key
            ),
            lambda key: mail_admins("S", "B", idempotency_key=key),
            lambda key: mail_managers("S", "B", html_message="<p>B</p>", idempotency_key=key),
            lambda key: EmailMessage(
                "S", "B", None, ["to@example.com"], headers={HEADER: key}
            ).send(),
            lambda key: DbBackend().send_messages([keyed(key)]),
        ],
        ids=[
            "send_mail",
            "send_mail-django-mailer-order",
            "send_html_mail",
            "mail_admins",
            "mail_managers",
            "EmailMessage.send",
            "DbBackend",
        ],
    )
    def test_every_way_of_queueing_takes_a_key(self, function: Any) -> None:
        assert function("k-1") == 1
        assert function("k-1") == 0
        row = self.assert_queued_once_with_key("k-1")
        assert HEADER.lower() not in row.message_data.lower()

    def test_the_functions_and_django_share_one_namespace_of_keys(self) -> None:
        assert keyed("welcome-5").send() == 1
        assert receipt("welcome-5") == 0
        assert mail_admins("S", "B", idempotency_key="welcome-5") == 0
        self.assert_queued(1)

    def test_a_key_given_as_argument_and_header_is_refused(self) -> None:
        with self.refused_at_enqueue(TypeError, match="twice"):
            receipt("a", headers={"x-mailer-idempotency-key": "b"})

    def test_a_message_whose_recipients_are_all_on_the_dont_send_list_leaves_its_key_free(
        self,
    ) -> None:
        from mailer.models import DontSendEntry

        DontSendEntry.objects.create(to_address="buyer@example.com")
        assert receipt("receipt-9") == 0
        DontSendEntry.objects.all().delete()
        assert receipt("receipt-9") == 1


class TestMassMail(MailAssertions):
    def test_a_fifth_item_is_the_key_of_that_message(self) -> None:
        queued, subjects = mass("n-1", None, "n-2")
        assert queued == 3
        assert sorted(Message.objects.values_list("idempotency_key", flat=True)) == [
            "",
            "n-1",
            "n-2",
        ]
        assert self.assert_queued_once_with_key("n-1").subject == subjects[0]

    def test_four_and_five_item_tuples_mix(self) -> None:
        datatuple: list[Any] = [
            ("S1", "B", None, ["to@example.com"]),
            ("S2", "B", None, ["to@example.com"], "m-1"),
        ]
        assert send_mass_mail(datatuple) == 2

    def test_a_key_repeated_inside_one_call_queues_the_first_and_the_others(
        self, caplog: Any
    ) -> None:
        with caplog.at_level(logging.INFO, logger="mailer.queue"):
            queued, subjects = mass("r-1", "r-2", "r-1", None, "r-1")
        assert queued == 3
        assert self.assert_queued_once_with_key("r-1").subject == subjects[0]
        self.assert_queued(3)
        self.assert_duplicates_logged(caplog.records, "r-1", times=2)

    def test_keys_used_before_leave_out_those_messages_only(self, caplog: Any) -> None:
        assert receipt("u-2") == 1
        with caplog.at_level(logging.INFO, logger="mailer.queue"):
            queued, _ = mass("u-1", "u-2", "u-3")
        assert queued == 2
        self.assert_queued(3)
        self.assert_duplicates_logged(caplog.records, "u-2", times=1)

    def test_all_keys_of_a_call_are_claimed_with_one_insert(self) -> None:
        with CaptureQueriesContext(connection) as queries:
            queued, _ = mass(*(f"b-{n}" for n in range(50)))
        assert queued == 50
        assert len(statements(queries, "INSERT", KEYS)) == 1
        assert len(statements(queries, "INSERT")) == 1

    def test_mail_without_keys_never_touches_the_key_table(self) -> None:
        with CaptureQueriesContext(connection) as queries:
            mass(None, None, None)
            receipt()
            DbBackend().send_messages([plain(), plain()])
        assert not [q for q in queries.captured_queries if KEYS in q["sql"]]

    def test_without_returning_keys_are_claimed_one_statement_each(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MySQL and SQLite before 3.35 have no INSERT ... RETURNING."""
        monkeypatch.setattr(idempotency, "has_returning", lambda connection: False)
        assert receipt("f-2") == 1
        with CaptureQueriesContext(connection) as queries:
            queued, subjects = mass("f-1", "f-2", "f-1", "f-3")
        assert queued == 2
        assert self.assert_queued_once_with_key("f-1").subject == subjects[0]
        assert len(statements(queries, "INSERT", KEYS)) == 3

    def test_a_tuple_of_another_length_is_refused(self) -> None:
        with self.refused_at_enqueue(InvalidMessage, match="idempotency_key"):
            send_mass_mail([("S", "B", None, ["to@example.com"], "k", "extra")])  # type: ignore[list-item]


class TestBadKeys(MailAssertions):
    BAD = [
        pytest.param("", "empty", id="empty"),
        pytest.param("x" * 256, "256 characters", id="too-long"),
        pytest.param(1024, "must be a str, not int", id="int"),
        pytest.param(b"receipt-1", "must be a str", id="bytes"),
        pytest.param("receipt\n1", "control character", id="newline"),
        pytest.param("receipt\x001", "control character", id="nul"),
        pytest.param("receipt\u20281", "control character", id="line-separator"),
        pytest.param("receipt\ud8001", "lone surrogate", id="surrogate"),
    ]

    @pytest.mark.parametrize(("key", "problem"), BAD)
    def test_is_refused_by_the_functions_with_nothing_written(self, key: Any, problem: str) -> None:
        for call in (
            lambda: receipt(key),
            lambda: send_html_mail(
                "S", "T", "<p>H</p>", None, ["to@example.com"], idempotency_key=key
            ),
            lambda: send_mass_mail(
                [
                    ("S", "B", None, ["a@example.com"], "fine"),
                    ("S", "B", None, ["b@example.com"], key),
                ]
            ),
            lambda: mail_managers("S", "B", idempotency_key=key),
        ):
            with self.refused_at_enqueue(InvalidIdempotencyKey, match=problem):
                call()
        assert not IdempotencyKey.objects.exists()

    @pytest.mark.parametrize(("key", "problem"), BAD)
    def test_is_refused_through_django_with_nothing_written(self, key: Any, problem: str) -> None:
        with self.refused_at_enqueue(InvalidIdempotencyKey, match=problem):
            DbBackend().send_messages([plain(), keyed(key)])
        assert not IdempotencyKey.objects.exists()

    def test_is_refused_even_when_nobody_would_get_the_mail(self, settings: Any) -> None:
        settings.ADMINS = []
        with self.refused_at_enqueue(InvalidIdempotencyKey):
            mail_admins("S", "B", idempotency_key="")

    def test_the_error_is_a_value_error_and_a_mailer_error(self) -> None:
        assert issubclass(InvalidIdempotencyKey, ValueError)
        assert issubclass(InvalidIdempotencyKey, InvalidMessage)
        assert issubclass(InvalidIdempotencyKey, MailerError)

    def test_fail_silently_drops_only_the_message_with_the_bad_key(self, caplog: Any) -> None:
        good = plain()
        with caplog.at_level(logging.WARNING, logger="mailer.backend"):
            assert DbBackend(fail_silently=True).send_messages([good, keyed("")]) == 1
        self.assert_queued_as(good)
        assert "not queued" in caplog.text

    def test_255_characters_and_any_printable_text_will_do(self) -> None:
        for key in ("x" * 255, "ünïcödé ✓ 注文-1", "a b\tc".replace("\t", " "), "'\"%_\\"):
            assert receipt(key) == 1, key
            assert receipt(key) == 0, key


class TestWindow(MailAssertions):
    def test_defaults_to_seven_days(self) -> None:
        from mailer.conf import settings as mailer_settings

        assert mailer_settings.IDEMPOTENCY_WINDOW == WINDOW

    def test_a_key_is_used_until_the_window_has_passed(self) -> None:
        assert receipt("w-1") == 1
        age_keys(WINDOW - 60)
        assert receipt("w-1") == 0
        age_keys(120)
        assert receipt("w-1") == 1
        assert Message.objects.filter(idempotency_key="w-1").count() == 2
        assert receipt("w-1") == 0

    def test_follows_the_setting(self, settings: Any) -> None:
        settings.MAILER_IDEMPOTENCY_WINDOW = 3600
        assert receipt("w-2") == 1
        age_keys(3000)
        assert receipt("w-2") == 0
        age_keys(1200)
        assert receipt("w-2") == 1

    def test_an_expired_key_in_a_mass_call_is_used_again_with_the_others(self) -> None:
        assert receipt("old") == 1
        age_keys(WINDOW + 1)
        assert receipt("new") == 1
        queued, _ = mass("old", "new", "fresh")
        assert queued == 2

    def test_purge_mail_log_deletes_the_keys_whose_window_has_passed(
        self, capsys: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(idempotency, "PURGE_BATCH", 2)
        mass("p-1", "p-2", "p-3")
        age_keys(WINDOW + 1)
        receipt("p-4")
        call_command("purge_mail_log", "7")
        assert "3 expired idempotency keys deleted" in capsys.readouterr().out
        (left,) = IdempotencyKey.objects.all()
        assert left.digest == idempotency.digest("p-4")
        call_command("purge_mail_log", "7")
        assert "idempotency" not in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
class TestTransactions(MailAssertions):
    def test_a_key_used_in_a_transaction_that_rolls_back_is_free_again(self) -> None:
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            assert receipt("t-1") == 1
            1 / 0  # noqa: B018
        assert not IdempotencyKey.objects.exists()
        self.assert_nothing_queued()
        assert receipt("t-1") == 1

    def test_a_savepoint_rolled_back_frees_the_key_and_the_transaction_goes_on(self) -> None:
        with transaction.atomic():
            with pytest.raises(ZeroDivisionError), transaction.atomic():
                receipt("t-2")
                1 / 0  # noqa: B018
            assert receipt("t-2") == 1
        self.assert_queued_once_with_key("t-2")

    def test_a_duplicate_leaves_the_callers_transaction_usable(self) -> None:
        """No IntegrityError: on PostgreSQL one would abort the whole transaction."""
        with transaction.atomic():
            assert receipt("t-3") == 1
            assert receipt("t-3") == 0
            assert Message.objects.count() == 1
            assert receipt("t-4") == 1
        assert Message.objects.count() == 2

    def test_a_message_that_cannot_be_written_leaves_its_key_free(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Outside a transaction too, the key and its message are written together."""

        def broken(*args: Any, **kwargs: Any) -> None:
            raise DatabaseError("the disk is full")

        assert connection.get_autocommit()
        with monkeypatch.context() as patch:
            patch.setattr(enqueue, "insert_rows", broken)
            with pytest.raises(DatabaseError):
                receipt("t-5")
        assert not IdempotencyKey.objects.exists()
        assert receipt("t-5") == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
class TestRacingProcesses(MailAssertions):
    @pytest.fixture
    def race(self, tmp_path: Path, smtp: Any) -> Any:
        self.server = smtp
        race = Race(tmp_path, smtp.port)
        yield race
        race.stop_all()

    @pytest.mark.parametrize("key", ["order-42", "expired-42"])
    def test_eight_processes_racing_with_one_key_queue_exactly_one_message(
        self, race: Race, key: str
    ) -> None:
        """The key's unique index decides, not a read before the write.

        On PostgreSQL and MariaDB each process queues in a transaction it
        keeps open until seven of them wait for the key the eighth claimed:
        had each read before writing, all eight would have got past. The
        expired key was used more than a window ago: one of the eight takes
        it over.
        """
        before = 0
        if key.startswith("expired"):
            before = receipt(key)
            age_keys(WINDOW + 1)
        hold = connection.vendor != "sqlite"
        names = [f"p{n}" for n in range(8)]
        for name in names:
            race.start(name, key, hold=hold)
        race.when_ready_go()
        if hold:
            processes.wait_until(
                lambda: (
                    len(race.said("called")) == 8
                    or (len(race.said("called")) == 1 and lock_waiters() >= 7)
                ),
                timeout=120,
            )
            for name in names:
                race.end(name, "commit")
        results = race.results()
        assert sum(queued for queued, _, _ in results.values()) == 1, results
        assert Message.objects.filter(idempotency_key=key).count() == before + 1
        duplicates = [err for queued, _, err in results.values() if queued == 0]
        assert all("duplicate" in err and repr(key) in err for err in duplicates)
        assert IdempotencyKey.objects.count() == 1
        send_all()
        assert len(self.server.received) == before + 1

    @pytest.mark.parametrize("how", ["commit", "rollback"])
    def test_a_key_held_by_an_open_transaction_waits_for_its_end(
        self, race: Race, how: str
    ) -> None:
        """Committed, the key is used; rolled back, it is free for the process that waited."""
        race.start("holder", "invoice-9", hold=True)
        race.when_ready_go()
        processes.wait_until(lambda: "holder" in race.said("called"), timeout=60)
        race.start("second", "invoice-9")
        if connection.vendor == "sqlite":
            processes.wait_until(lambda: "second" in race.said("calling"), timeout=180)
        else:
            processes.wait_until(lambda: lock_waiters() >= 1, timeout=180)
        race.end("holder", how)
        results = race.results()
        assert results["holder"][:2] == (1, how)
        assert results["second"][0] == (0 if how == "commit" else 1)
        self.assert_queued_once_with_key("invoice-9")

    def test_a_process_started_after_delivery_finds_the_key_used(self, race: Race) -> None:
        assert receipt("after-1") == 1
        done = processes.run(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert len(self.server.received) == 1
        self.assert_queue_empty()
        race.start("late", "after-1")
        race.when_ready_go()
        (queued, _, err) = race.results()["late"]
        assert queued == 0
        assert "duplicate" in err and "'after-1'" in err
        self.assert_queue_empty()


class TestDjangoStyles(MailAssertions):
    """The control header, through Django's own ``EmailMessage.send()``, in either style."""

    def check(self, smtp: Any) -> None:
        self.server = smtp
        first = keyed("style-1")
        assert first.send() == 1
        assert keyed("style-1").send() == 0
        row = self.assert_queued_once_with_key("style-1")
        assert "X-Mailer" not in row.message_data
        send_all()
        received = self.assert_delivered_once(first)
        assert HEADER not in received.message
        assert keyed("style-1").send() == 0

    def test_with_email_backend(self, legacy_style: None, smtp: Any) -> None:
        self.check(smtp)

    def test_with_mailers(self, mailers_style: dict[str, Any], smtp: Any) -> None:
        self.check(smtp)
        from django.core.mail import mailers

        message = keyed("style-2")
        assert mailers["default"].send_messages([message]) == 1
        assert mailers["default"].send_messages([keyed("style-2")]) == 0


def test_mailer_exports_the_functions_with_the_keyword() -> None:
    import inspect

    for name in mailer.__all__:
        if name != "send_mass_mail":
            assert "idempotency_key" in inspect.signature(getattr(mailer, name)).parameters, name


class TestAdmin:
    """The admin shows a message's key, and finds the message by it."""

    def test_a_messages_page_shows_its_key_and_only_if_it_has_one(self, admin_client: Any) -> None:
        receipt("receipt-3141")
        receipt()
        with_key = Message.objects.get(idempotency_key="receipt-3141")
        without = Message.objects.get(idempotency_key="")
        page = text(admin_client.get(f"{LIST}{with_key.pk}/change/"))
        assert "field-idempotency_key" in page and "receipt-3141" in page
        assert "field-idempotency_key" not in text(admin_client.get(f"{LIST}{without.pk}/change/"))

    def test_search_by_the_whole_key_finds_the_message_and_its_log(
        self, admin_client: Any, smtp: Any
    ) -> None:
        receipt("receipt 2718")
        receipt("receipt-27")
        (target,) = Message.objects.filter(idempotency_key="receipt 2718")
        assert rows(admin_client.get(LIST, {"q": '"receipt 2718"'})) == [str(target.pk)]
        assert rows(admin_client.get(LIST, {"q": '"receipt 27"'})) == []
        send_all()
        log = MessageLog.objects.get(idempotency_key="receipt 2718")
        assert rows(admin_client.get(LOG_LIST, {"q": '"receipt 2718"'})) == [str(log.pk)]
        assert "receipt 2718" in text(admin_client.get(f"{LOG_LIST}{log.pk}/change/"))

    def test_send_a_copy_queues_a_copy_without_the_key(self) -> None:
        from mailer.queue import operations

        receipt("receipt-1618")
        (original,) = Message.objects.all()
        report = operations.send_copy([original])
        assert report.done == 1
        copy = Message.objects.get(pk=report.created[0])
        assert copy.idempotency_key == ""
        assert receipt("receipt-1618") == 0

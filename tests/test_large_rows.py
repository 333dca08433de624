"""A row far over MAILER_MAX_MESSAGE_SIZE, written straight to the table, is failed unread.

The claim has the database measure each row (``LENGTH()``) and fetches the data
of rows within the limit only; a bigger one is failed as "stored data is too
large: ..." and the good message after it is delivered. Measured in a real
``manage.py send_mail`` process: a 40 MB row must not cost 40 MB (it cost
about 370 MB before).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection

from mailer.engine import send_all
from mailer.models import Message, MessageLog, Status
from mailer.queue.enqueue import _max_packet

from . import processes
from .assertions import MailAssertions
from .samples import plain, token_of

pytestmark = pytest.mark.django_db(transaction=True)

TOO_LARGE = "stored data is too large: "
MB = 1_000_000


def grow(row: Message, characters: int, char: str = "x") -> int:
    """Give ``row`` a body of ``characters`` characters, straight in the table; its new length."""
    doc = json.loads(row.message_data)
    doc["body"] = char * characters
    data = json.dumps(doc, ensure_ascii=False)
    Message.objects.filter(pk=row.pk).update(message_data=data)
    return len(data)


class TestTooLargeRows(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def big_then_good(self) -> tuple[Message, str, str]:
        big = plain()
        (row,) = Message.objects.enqueue([big])
        good = plain()
        Message.objects.enqueue([good])
        return row, token_of(big), token_of(good)

    def test_the_claim_does_not_read_a_row_over_the_limit(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = 100_000
        row, _, _ = self.big_then_good()
        size = grow(row, 300_000)
        big, good = Message.objects.claim("test", 10, lease=60)
        assert big.pk == row.pk and big.message_data is None and big.stored_size == size
        assert good.message_data and good.stored_size == len(good.message_data)
        assert big.status == good.status == Status.CLAIMED

    def test_it_fails_as_too_large_and_the_run_goes_on(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = 100_000
        row, big, good = self.big_then_good()
        size = grow(row, 1_000_000)
        send_all()
        self.assert_delivered_once(good)
        self.assert_not_delivered(big)
        failed = self.assert_failed_with(big, None, TOO_LARGE)
        assert failed.last_reply == (
            f"{TOO_LARGE}{size} characters, over MAILER_MAX_MESSAGE_SIZE (100000 bytes); not read"
        )
        log = MessageLog.objects.get(queue_id=row.pk)
        assert log.message_data is None  # not copied into the log either
        assert log.log_message == failed.last_reply

    def test_within_the_limit_in_characters_but_over_it_in_bytes(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = 100_000
        row, big, good = self.big_then_good()
        grow(row, 40_000, "日")  # 40,000 characters, 120,000 bytes
        send_all()
        self.assert_delivered_once(good)
        self.assert_failed_with(big, None, TOO_LARGE)
        assert (
            "bytes, over MAILER_MAX_MESSAGE_SIZE (100000); not decoded"
            in Message.objects.get(pk=row.pk).last_reply
        )

    def test_without_a_limit_every_row_is_read(self, settings: Any) -> None:
        settings.MAILER_MAX_MESSAGE_SIZE = None
        row, big, good = self.big_then_good()
        grow(row, 300_000)
        send_all()
        self.assert_delivered_once(big)
        self.assert_delivered_once(good)

    @pytest.mark.slow
    def test_a_40_mb_row_costs_send_mail_little_memory(self) -> None:
        """A real process: the row is failed, the good one sent, and peak memory stays low.

        MariaDB takes no statement over max_allowed_packet (16 MB by default): there the
        row is as large as the server lets a test write it. SQLite runs inside the
        process, and rewrites a whole row whenever one of its columns is written (the
        claim, then the failure): the library holds two or three copies of the row
        for a moment, which no query can avoid; our code holds none.
        """
        packet = _max_packet(connection.alias)
        characters = 40 * MB if packet is None else min(40 * MB, packet - MB)
        row, big, good = self.big_then_good()
        size = grow(row, characters)
        done, peak = processes.run_measured(["send_mail"], self.server.port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("sent 1, deferred 0, failed 1 in ")
        self.assert_delivered_once(good)
        self.assert_failed_with(big, None, f"{TOO_LARGE}{size} characters")
        print(f"\npeak RSS of send_mail with a {size / MB:.0f} MB row: {peak / MB:.0f} MB")
        bound = 250 * MB if connection.vendor == "sqlite" else 150 * MB  # 370 MB before
        assert peak < bound, f"send_mail used {peak / MB:.0f} MB for a {size / MB:.0f} MB row"

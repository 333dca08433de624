"""At the queue's end, while other workers drain it too, a worker's connections claim
only their even share of what is left, so that every worker finishes together
(``mailer.delivery.taper``; issue 16, item 5). A worker alone claims as before."""

from __future__ import annotations

import datetime
import math
import threading
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.conf import settings as mailer_settings
from mailer.delivery import taper as taper_module
from mailer.delivery.engine import INITIAL_CLAIM
from mailer.delivery.taper import Taper
from mailer.engine import SendCounts
from mailer.models import Message
from mailer.queue.claim import due_left
from mailer.queue.message import MessageQuerySet
from mailer.queue.workers import Worker
from mailer.runner.worker import MailWorker

from .assertions import MailAssertions
from .samples import batch

pytestmark = pytest.mark.django_db(transaction=True)


def alive(name: str, connections: int) -> None:
    """A worker with ``connections`` delivery connections, as its heartbeat reports it."""
    Worker.objects.beat(name, "elsewhere", 1, concurrency=connections, counts=(0, 0, 0))


def queued(count: int, **options: Any) -> None:
    Message.objects.enqueue(batch(count), **options)


class TestTheConnectionsAlive:
    def test_are_those_of_every_worker_alive_added_up(self) -> None:
        alive("a", 8)
        alive("b", 4)
        assert Worker.objects.connections() == 12

    def test_leave_out_a_worker_silent_for_a_lease(self) -> None:
        alive("a", 8)
        alive("b", 4)
        silent = timezone.now() - datetime.timedelta(seconds=mailer_settings.LEASE_SECONDS + 1)
        Worker.objects.filter(name="b").update(heartbeat_at=silent)
        assert Worker.objects.connections() == 8

    def test_are_none_when_no_worker_runs(self) -> None:
        assert Worker.objects.connections() == 0


class TestWhatIsLeftToClaim:
    def test_is_counted_no_further_than_asked(self) -> None:
        queued(5)
        assert due_left(Message.objects.all(), 3) == 3
        assert due_left(Message.objects.all(), 10) == 5

    def test_leaves_out_claimed_and_scheduled_messages(self) -> None:
        queued(4)
        queued(2, send_at=timezone.now() + datetime.timedelta(hours=1))
        Message.objects.claim("someone", 1, lease=60)
        assert due_left(Message.objects.all(), 100) == 3


class TestATaper:
    def test_alone_a_worker_claims_as_before_without_counting(self) -> None:
        alive("me", 8)
        queued(3)
        with CaptureQueriesContext(connection) as queries:
            assert Taper("default", 8).size(Message.objects.all(), 9) == 9
        assert len(queries) == 1, "only the connections alive are read"

    def test_with_others_alive_a_connection_claims_its_share_of_what_is_left(self) -> None:
        alive("me", 8)
        alive("other", 8)
        queued(20)
        assert Taper("default", 8).size(Message.objects.all(), 9) == math.ceil(20 / 16)

    def test_the_last_messages_go_one_per_claim(self) -> None:
        alive("me", 8)
        alive("other", 8)
        queued(3)
        assert Taper("default", 8).size(Message.objects.all(), 9) == 1

    def test_far_from_the_end_a_connection_claims_as_before(self) -> None:
        alive("me", 2)
        alive("other", 2)
        queued(4 * 9)  # a full claim for every connection alive
        assert Taper("default", 2).size(Message.objects.all(), 9) == 9

    def test_the_connections_alive_are_read_at_most_once_a_second(self, monkeypatch: Any) -> None:
        alive("me", 2)
        alive("other", 2)
        queued(4)
        taper = Taper("default", 2)
        taper.size(Message.objects.all(), 9)
        with CaptureQueriesContext(connection) as queries:
            taper.size(Message.objects.all(), 9)
        assert len(queries) == 1, "the count alone"
        monkeypatch.setattr(taper_module, "FLEET_SECONDS", 0.0)
        with CaptureQueriesContext(connection) as queries:
            taper.size(Message.objects.all(), 9)
        assert len(queries) == 2, "the connections alive read again, and the count"


class TestAWorkerAmongOthers(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, monkeypatch: Any) -> None:
        self.server = smtp
        self.server.faults.data_delay = 0.02
        self.claims: list[tuple[int | None, int]] = []  # (due counted before, rows claimed)
        counted: dict[int, int] = {}  # thread -> what its last count found
        claim = MessageQuerySet.claim

        def counting(queryset: MessageQuerySet, at_most: int) -> int:
            found = due_left(queryset, at_most)
            counted[threading.get_ident()] = found
            return found

        def claiming(queryset: MessageQuerySet, owner: str, *args: Any, **kwargs: Any) -> Any:
            found = claim(queryset, owner, *args, **kwargs)
            self.claims.append((counted.pop(threading.get_ident(), None), len(found)))
            return found

        monkeypatch.setattr(taper_module, "due_left", counting)
        monkeypatch.setattr(MessageQuerySet, "claim", claiming)

    def test_claims_no_more_than_its_share_of_what_is_left(self) -> None:
        alive("another worker", 2)  # alive, not draining: four connections in all
        messages = batch(40)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=2, listen=False, exit_when_idle=True)
        assert worker.run() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        assert self.claims[0] == (None, 2 * INITIAL_CLAIM)  # before its speed is known
        counted = [(left, taken) for left, taken in self.claims if left is not None]
        assert counted, "no claim counted what was left"
        for left, taken in counted:
            assert taken <= math.ceil(left / 4), self.claims

    def test_alone_counts_nothing(self) -> None:
        messages = batch(40)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=2, listen=False, exit_when_idle=True)
        assert worker.run() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        assert len(self.claims) > 1
        assert all(left is None for left, _ in self.claims), self.claims

"""A worker's N connections start together, never wait for a claim between batches,
and finish together (issue 16, item 5).

Before its slots start, a worker claims the first batch of every one of them in one
statement and asks once whether the don't-send list has entries, so each slot has a
message going within the first round trip. Each slot's next batch is claimed by the
pool's thread while it sends its last message. At the end of the queue, a slot that
runs out takes half of what another still holds.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from django.db import OperationalError, connections

from mailer.delivery.engine import INITIAL_CLAIM, Engine
from mailer.delivery.pool import Pool
from mailer.engine import SendCounts
from mailer.models import Message, Status
from mailer.queue.message import MessageQuerySet
from mailer.runner.send import Delivery
from mailer.runner.worker import MailWorker

from .assertions import MailAssertions
from .processes import wait_until
from .samples import batch, claims, ids

pytestmark = pytest.mark.django_db(transaction=True)


class TestAWorkersSlots(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, monkeypatch: Any) -> None:
        self.server = smtp
        self.server.pipelining = False
        self.claims: list[tuple[str, str, int]] = []  # (thread, owner, rows claimed)
        claim = MessageQuerySet.claim

        def counted(queryset: MessageQuerySet, owner: str, *args: Any, **kwargs: Any) -> Any:
            found = claim(queryset, owner, *args, **kwargs)
            self.claims.append((threading.current_thread().name, owner, len(found)))
            return found

        monkeypatch.setattr(MessageQuerySet, "claim", counted)

    def start(self, worker: MailWorker) -> tuple[threading.Thread, list[SendCounts]]:
        done: list[SendCounts] = []

        def run() -> None:
            try:
                done.append(worker.run())
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread, done

    def test_every_slot_has_a_message_in_flight_before_any_is_accepted(self) -> None:
        slots = 6
        self.server.faults.data_delay = 0.5  # each message's reply comes half a second on
        messages = batch(slots * 3)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=slots, listen=False, exit_when_idle=True)
        thread, done = self.start(worker)
        try:
            wait_until(lambda: len(self.server.in_flight()) == slots, timeout=10, interval=0.005)
            # Every connection has handed a message over; none has been answered yet.
            assert self.server.received == []
            # All their first batches came from one claim, made before the slots started.
            assert len(self.claims) == 1, self.claims
            assert self.claims[0][2] == len(messages)
        finally:
            thread.join(60)
        assert done == [SendCounts(sent=len(messages))]
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()

    def test_later_batches_are_claimed_ahead_by_the_pools_thread(self) -> None:
        self.server.faults.data_delay = 0.02
        messages = batch(60)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=2, listen=False, exit_when_idle=True)
        assert worker.run() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        # The first batches were claimed before the slots started (here), every later
        # batch while a slot was still sending its last message (by the pool's thread):
        # a slot claims for itself only once the queue is dry.
        here = threading.current_thread().name
        first = 2 * INITIAL_CLAIM
        assert [n for name, _, n in self.claims if name == here] == [first]
        assert sum(n for name, _, n in self.claims if name == "mailer-claim") == 60 - first
        assert all(n == 0 for name, _, n in self.claims if name.startswith("mailer-slot"))

    def test_the_slots_finish_together(self) -> None:
        slots = 4
        self.server.faults.data_delay = 0.03
        messages = batch(60)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=slots, listen=False, exit_when_idle=True)
        assert worker.run() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        per_connection = Counter(received.peer for received in self.server.received)
        assert len(per_connection) == slots
        # No slot stood idle while another still held several messages.
        assert max(per_connection.values()) - min(per_connection.values()) <= 3, per_connection

    def test_first_batches_a_stopped_worker_had_not_started_go_back(self, monkeypatch: Any) -> None:
        messages = batch(12)
        Message.objects.enqueue(messages)
        worker = MailWorker(concurrency=4, listen=False)
        prime = Delivery._prime

        def then_stop(delivery: Delivery) -> None:
            prime(delivery)
            worker.request_stop()  # a SIGTERM just after the first batches were claimed

        monkeypatch.setattr(Delivery, "_prime", then_stop)
        assert worker.run() == SendCounts()
        assert [n for _, _, n in self.claims] == [12]
        assert Message.objects.filter(status=Status.QUEUED).count() == len(messages)
        assert self.server.received == []


class TestClaimingAhead:
    """A pool with ``ahead`` claims a connection's next batch while it sends its last."""

    def test_taking_the_last_message_starts_the_next_claim_in_the_pools_thread(self) -> None:
        pool = Pool(ahead=True)
        asked: list[str] = []
        batches = iter([claims("a", 1, 2), claims("a", 3, 4)])

        def claim() -> list[Any]:
            asked.append(threading.current_thread().name)
            return next(batches, [])

        try:
            held = pool.take("a", claim)
            assert ids([pool.next(held), pool.next(held)]) == [1, 2]  # the last: claim ahead
            assert ids(pool.take("a", claim)) == [3, 4]
            assert asked == [threading.current_thread().name, "mailer-claim"]
        finally:
            pool.close()

    def test_what_a_claim_ahead_raised_is_raised_by_the_next_take(self) -> None:
        pool = Pool(ahead=True)
        calls = iter([lambda: claims("a", 1), lambda: (_ for _ in ()).throw(OSError("down"))])

        def claim() -> list[Any]:
            return next(calls)()  # type: ignore[no-any-return]

        try:
            held = pool.take("a", claim)
            pool.next(held)
            with pytest.raises(OSError, match="down"):
                pool.take("a", claim)
        finally:
            pool.close()

    def test_what_a_claim_ahead_brings_after_its_connection_stopped_is_given_back(
        self,
    ) -> None:
        pool = Pool(ahead=True)
        claiming, release = threading.Event(), threading.Event()
        batches = iter([claims("a", 1)])

        def claim() -> list[Any]:
            found = next(batches, None)
            if found is not None:
                return found
            claiming.set()
            release.wait(5)
            return claims("a", 2, 3)

        try:
            held = pool.take("a", claim)
            pool.next(held)
            claiming.wait(5)
            got: list[Any] = []
            dropping = threading.Thread(target=lambda: got.extend(pool.drop_all("a")))
            dropping.start()  # waits for the claim on its way
            release.set()
            dropping.join(5)
            assert ids(got) == [2, 3]
        finally:
            pool.close()

    def test_a_claim_ahead_retried_after_a_failure_keeps_the_message_being_sent(
        self, monkeypatch: Any
    ) -> None:
        # The interleaving of a database outage: a connection takes the last message of
        # its batch (the pool's thread claims its next batch meanwhile), the claim fails,
        # and when it is retried -- after giving back strays of a claim whose COMMIT may
        # have gone through -- the message is still being sent, or about to be given back
        # because it could not be. It is the connection's claim all along: the retry
        # neither gives it back nor claims it again for the next batch, and when the
        # connection gives it back, it is held by no batch.
        Message.objects.enqueue(batch(3))
        claim = MessageQuerySet.claim
        failures = iter([OperationalError("database is locked")])

        def failing_once(queryset: MessageQuerySet, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "mailer-claim":
                error = next(failures, None)
                if error is not None:
                    raise error
            return claim(queryset, *args, **kwargs)

        monkeypatch.setattr(MessageQuerySet, "claim", failing_once)
        pool = Pool(ahead=True)
        engine = Engine("tests-ahead/0", pool=pool, first_claim=1)
        try:
            held = pool.take(engine.owner, engine._claim)
            sending = pool.next(held)  # the last of its batch: the next is claimed ahead
            assert sending is not None
            following = pool.take(engine.owner, engine._claim)  # waits for the retry
            assert sending.pk not in ids(following)
            row = Message.objects.get(pk=sending.pk)
            assert (row.status, row.claimed_by) == (Status.CLAIMED, engine.owner)
            # Not handed over (the outage kept it from its final "."): given back.
            Message.objects.release_each([sending], engine.owner)
            assert Message.objects.get(pk=sending.pk).status == Status.QUEUED
        finally:
            engine.close()
            pool.close()

    def test_first_batches_claimed_by_one_are_lent_to_the_others(self) -> None:
        pool = Pool()
        pool.prime({"a": claims("a", 1, 2), "b": claims("a", 3, 4)})
        assert ids(pool.take("b", list)) == [3, 4]
        assert pool.in_hand("a") == {1, 2, 3, 4}
        assert pool.in_hand("b") == set()
        assert ids(pool.take("a", list)) == [1, 2]
        assert sorted(pool.owners()) == ["a", "b"]

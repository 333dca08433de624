"""A send_mail run shares the due mail over several delivery connections
(MAILER_SEND_CONCURRENCY, 2 by default) when there is enough of it, each kept open
for its whole share; the run's limits, claims and results are those of one connection.
A run's connections and a runmailer worker's slots are those of one ``Delivery``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, transaction

from mailer.delivery.engine import Engine
from mailer.delivery.pool import Pool
from mailer.engine import SendCounts, send_all
from mailer.models import Message, MessageLog, Status
from mailer.queue.message import MessageQuerySet
from mailer.runner.send import Delivery
from mailer.runner.sharing import MIN_SHARE
from mailer.runner.worker import MailWorker

from .assertions import MailAssertions
from .samples import batch, claims, ids

pytestmark = pytest.mark.django_db(transaction=True)


def queue(count: int) -> list[Any]:
    messages = batch(count)
    Message.objects.enqueue(messages)
    return messages


class TestSeveralConnections(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def peers(self) -> dict[Any, int]:
        """Messages delivered per client connection."""
        found: dict[Any, int] = {}
        for received in self.server.received:
            found[received.peer] = found.get(received.peer, 0) + 1
        return found

    def test_enough_mail_goes_over_two_connections_each_kept_for_its_share(self) -> None:
        messages = queue(4 * MIN_SHARE * 2)
        assert send_all() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()
        assert self.server.connections == 2
        assert len(self.peers()) == 2, "a connection was opened more than once"
        assert all(count > 1 for count in self.peers().values())

    def test_a_connection_that_finds_the_queue_empty_takes_over_half_of_anothers(
        self,
    ) -> None:
        # 25 messages and two connections: whichever claims first takes all 25 (a first
        # claim is half of 50); the other finds nothing to claim and shares its batch.
        self.server.faults.data_delay = 0.005
        messages = queue(25)
        assert send_all() == SendCounts(sent=25)
        self.assert_each_delivered_once(messages)
        assert len(self.peers()) == 2
        assert min(self.peers().values()) >= 10, self.peers()

    def test_a_connection_whose_batch_a_sibling_took_before_it_started_takes_again(
        self,
    ) -> None:
        # The last message a connection holds goes to a sibling that ran out, even
        # before the connection starts it: it finds its batch empty and takes again.
        messages = queue(1)
        pool = Pool()
        engine = Engine("tests-sharing/0", pool=pool)
        try:
            held = pool.take(engine.owner, engine._claim)
            taken = pool.take("tests-sharing/1", list)  # found nothing due: takes the last
            assert len(taken) == 1 and not held
            engine._deliver_batch(held)  # nothing left in it: nothing to do
            # Not started by the sibling yet: taken back, as the last of what it holds.
            assert engine.run() == SendCounts(sent=1)
            assert not taken
            self.assert_each_delivered_once(messages)
        finally:
            engine.close()

    def test_every_message_is_logged_once_as_sent(self) -> None:
        messages = queue(60)
        send_all()
        assert MessageLog.objects.filter(result="1").count() == len(messages)
        assert MessageLog.objects.count() == len(messages)

    def test_little_mail_goes_over_one_connection(self) -> None:
        messages = queue(2 * MIN_SHARE - 1)
        assert send_all() == SendCounts(sent=len(messages))
        assert self.server.connections == 1

    def test_the_setting_chooses_how_many(self, settings: Any) -> None:
        settings.MAILER_SEND_CONCURRENCY = 4
        messages = queue(80)
        assert send_all() == SendCounts(sent=len(messages))
        self.assert_each_delivered_once(messages)
        assert self.server.connections == 4
        assert len(self.peers()) == 4, "a connection was opened more than once"

    def test_no_more_connections_than_the_mail_fills(self, settings: Any) -> None:
        settings.MAILER_SEND_CONCURRENCY = 8
        queue(3 * MIN_SHARE + 5)
        send_all()
        assert self.server.connections == 3

    def test_send_all_may_ask_for_one(self) -> None:
        queue(80)
        send_all(concurrency=1)
        assert self.server.connections == 1

    def test_a_throttled_run_keeps_one_connection(self, settings: Any) -> None:
        settings.MAILER_EMAIL_THROTTLE = 0.001
        messages = queue(60)
        assert send_all() == SendCounts(sent=len(messages))
        assert self.server.connections == 1

    def test_inside_a_transaction_one_connection_delivers(self) -> None:
        messages = queue(60)
        with transaction.atomic():
            assert send_all() == SendCounts(sent=len(messages))
        assert self.server.connections == 1
        self.assert_each_delivered_once(messages)

    def test_max_batch_counts_for_the_whole_run(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_BATCH = 25
        queue(80)
        assert send_all() == SendCounts(sent=25)
        assert len(self.server.received) == 25
        assert Message.objects.filter(status=Status.QUEUED).count() == 55
        assert not Message.objects.filter(status=Status.CLAIMED).exists()

    def test_max_deferred_counts_for_the_whole_run(self, settings: Any) -> None:
        settings.MAILER_EMAIL_MAX_DEFERRED = 7
        self.server.faults.transient_first = 1000
        queue(80)
        assert send_all() == SendCounts(deferred=7)
        assert Message.objects.filter(status=Status.DEFERRED).count() == 7
        assert not Message.objects.filter(status=Status.CLAIMED).exists()

    def test_the_progress_callback_sees_the_runs_counts_one_at_a_time(self) -> None:
        seen: list[int] = []
        messages = queue(80)
        send_all(on_result=lambda counts: seen.append(counts.sent))
        assert seen == list(range(1, len(messages) + 1))


class TestOneDeliveryPath(MailAssertions):
    """send_all (send_mail, the Tasks drain) and a runmailer worker run one way."""

    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_run_and_a_workers_slots_go_through_delivery_run(self, monkeypatch: Any) -> None:
        runs: list[tuple[int, bool, SendCounts]] = []
        run = Delivery.run

        def watched(delivery: Delivery, *args: Any, **kwargs: Any) -> SendCounts:
            counts = run(delivery, *args, **kwargs)
            runs.append((delivery.connections, delivery.lock, counts))
            return counts

        monkeypatch.setattr(Delivery, "run", watched)
        messages = queue(4 * MIN_SHARE)
        assert send_all() == SendCounts(sent=len(messages))
        more = queue(4 * MIN_SHARE)
        worker = MailWorker(concurrency=3, listen=False, exit_when_idle=True)
        assert worker.run() == SendCounts(sent=len(more))
        self.assert_each_delivered_once(messages + more)
        # Every message of each went through Delivery.run: the run's two connections
        # under the send_mail lock, the worker's three slots without.
        assert runs == [
            (2, True, SendCounts(sent=len(messages))),
            (3, False, SendCounts(sent=len(more))),
        ]


class TestPool:
    """Connections that run out take half of what the one with the most still holds."""

    def test_a_connection_that_claims_nothing_takes_half_of_the_most_held(self) -> None:
        pool = Pool()
        busy = pool.take("a", lambda: claims("a", *range(10)))
        assert pool.next(busy).pk == 0
        shared = pool.take("b", list)
        assert ids(shared) == [6, 7, 8, 9]
        assert ids(busy) == [1, 2, 3, 4, 5]

    def test_what_a_sibling_took_stays_its_claimers_until_done(self) -> None:
        pool = Pool()
        pool.take("a", lambda: claims("a", *range(4)))
        shared = pool.take("b", list)
        assert ids(shared) == [2, 3]
        assert pool.in_hand("a") == {0, 1, 2, 3}
        sent = pool.next(shared)  # being sent by the sibling: still in hand
        assert pool.in_hand("a") == {0, 1, 2, 3}
        pool.done([sent])
        assert pool.in_hand("a") == {0, 1, 3}
        assert pool.in_hand("b") == set()

    def test_what_is_being_sent_or_given_back_stays_in_hand_until_done(self) -> None:
        pool = Pool()
        held = pool.take("a", lambda: claims("a", 1, 2, 3))
        sending = pool.next(held)
        left = pool.drop(held)  # to be given back
        assert pool.in_hand("a") == {1, 2, 3}
        pool.done([sending, *left[:1]])
        assert pool.in_hand("a") == {3}

    def test_the_last_message_a_sibling_holds_is_taken_while_it_sends_the_one_before(
        self,
    ) -> None:
        pool = Pool()
        busy = pool.take("a", lambda: claims("a", 1, 2))
        assert pool.next(busy).pk == 1
        assert ids(pool.take("b", list)) == [2]  # sent now, not after a's message 1
        assert pool.next(busy) is None
        assert pool.in_hand("a") == {1, 2}

    def test_nothing_is_taken_from_a_sibling_that_holds_nothing(self) -> None:
        pool = Pool()
        busy = pool.take("a", lambda: claims("a", 1))
        pool.next(busy)
        assert not pool.take("b", list)

    def test_a_connection_waits_for_a_siblings_claim_on_its_way(self) -> None:
        pool = Pool()
        claiming, release = threading.Event(), threading.Event()

        def slow_claim() -> list[Any]:
            claiming.set()
            release.wait(5)
            return claims("a", *range(8))

        got: list[Any] = []
        sibling = threading.Thread(target=pool.take, args=("a", slow_claim))
        sibling.start()
        claiming.wait(5)  # a's claim is on its way: b, finding nothing, waits for it
        waiter = threading.Thread(target=lambda: got.extend(pool.take("b", list)))
        waiter.start()
        release.set()
        sibling.join()
        waiter.join()
        assert ids(got) == [4, 5, 6, 7]

    def test_settling_a_give_back_waits_for_a_claim_on_its_way_and_leaves_out_its_take(
        self,
    ) -> None:
        pool = Pool()
        claiming, release = threading.Event(), threading.Event()
        (message,) = claims("a", 7)

        def slow_claim() -> list[Any]:
            claiming.set()
            release.wait(5)
            return [message]  # the give-back had committed: claimed again

        taker = threading.Thread(target=pool.take, args=("a", slow_claim))
        taker.start()
        claiming.wait(5)
        pool.owe([message], "a")  # its give-back failed (maybe committed)
        given: list[Any] = []
        settler = threading.Thread(target=pool.settle, args=([message], "a", given.append, set()))
        settler.start()
        settler.join(0.2)
        assert settler.is_alive() and not given  # it waits for the claim on its way
        release.set()
        taker.join(5)
        settler.join(5)
        assert given == [[]]

    def test_what_is_left_is_given_back_by_its_owner(self) -> None:
        pool = Pool()
        pool.take("a", lambda: claims("a", 1, 2, 3))
        assert ids(pool.drop_all("a")) == [1, 2, 3]
        assert pool.drop_all("a") == []

    def test_once_a_claim_finds_nothing_the_others_share_without_claiming(self) -> None:
        pool = Pool()
        asked: list[str] = []

        def claim(owner: str, *found: int) -> Any:
            return lambda: asked.append(owner) or claims(owner, *found)

        held = [pool.take("a", claim("a", *range(8)))]
        held.append(pool.take("b", claim("b")))  # the queue is dry: b shares
        assert ids(held[-1]) == [4, 5, 6, 7]
        held.append(pool.take("c", claim("c")))  # c shares without claiming first
        assert ids(held[-1]) == [2, 3]
        assert asked == ["a", "b"]
        for taken in held:
            pool.drop(taken)
        assert ids(pool.take("d", claim("d", 20))) == [20]  # nothing to share: d claims
        # Mail was found since: e claims first (finding nothing, it takes d's last).
        assert ids(pool.take("e", claim("e"))) == [20]
        assert asked == ["a", "b", "d", "e"]


class TestAGiveBackWhoseAnswerWasLost:
    """A give-back may commit and its answer be lost (the connection cut after COMMIT):
    it is tried again later. Until then no claim is made in its claimer's name, and
    what a claim already on its way took again is left out of the second try: else the
    second give-back would take the message from under the connection now sending it,
    and it would be queued and sent at once."""

    owner = "tests-lost/0"

    @pytest.fixture(autouse=True)
    def _answer_lost_once(self, monkeypatch: Any) -> None:
        release = MessageQuerySet.release_each
        lost = iter([True])

        def release_each(queryset: MessageQuerySet, messages: Any, owner: str = "") -> int:
            released = release(queryset, messages, owner)
            if next(lost, False):
                raise OperationalError("server closed the connection unexpectedly")
            return released

        monkeypatch.setattr(MessageQuerySet, "release_each", release_each)

    @pytest.fixture
    def engine(self) -> Iterator[Engine]:
        """A connection that claimed one message and gave it back, the answer lost."""
        Message.objects.enqueue(batch(1))
        engine = Engine(self.owner, pool=Pool())
        try:
            held = engine.pool.take(self.owner, engine._claim)
            (self.message,) = engine.pool.drop(held)
            engine._release_unfinished([self.message])
            assert engine.owes_claims
            assert Message.objects.get(pk=self.message.pk).status == Status.QUEUED  # committed
            yield engine
        finally:
            engine.close()

    def test_no_claim_is_made_in_its_name_until_it_is_tried_again(self, engine: Engine) -> None:
        assert not engine.pool.take(self.owner, engine._claim)
        engine._release_unfinished([])  # tried again
        assert not engine.owes_claims
        assert ids(engine.pool.take(self.owner, engine._claim)) == [self.message.pk]
        assert Message.objects.get(pk=self.message.pk).claimed_by == self.owner

    def test_what_a_claim_on_its_way_took_again_is_left_out_of_the_second_try(
        self, engine: Engine
    ) -> None:
        # The pool's thread was claiming this connection's next batch meanwhile: it
        # took the message again, after the give-back's COMMIT.
        engine.pool.prime({self.owner: Message.objects.claim(self.owner, 1, lease=60)})
        engine._release_unfinished([])
        assert not engine.owes_claims
        row = Message.objects.get(pk=self.message.pk)
        assert (row.status, row.claimed_by) == (Status.CLAIMED, self.owner)
        assert ids(engine.pool.take(self.owner, engine._claim)) == [self.message.pk]

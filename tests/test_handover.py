"""The final "." waits for the previous result's commit; the envelope does not.

Against a server slower than 40 ms a message, a connection hands a message over
(writes its final ".") only once the result of the one before it is committed:
a crash re-sends at most one message per connection. Its MAIL FROM, RCPT TO,
DATA and content go while that result is being written, so the wait overlaps
with their round trips. A message called off while it waits for its "." (the
worker stopping) is not delivered: the connection is dropped in the middle of
DATA, and the message goes back to the queue.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections

from mailer.delivery.engine import Engine
from mailer.engine import SendCounts, send_all
from mailer.models import Message, Status
from mailer.queue.message import MessageQuerySet

from .assertions import MailAssertions
from .processes import wait_until
from .samples import batch

pytestmark = pytest.mark.django_db(transaction=True)


class TestTheFinalDotWaitsForTheCommit(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any, monkeypatch: Any) -> None:
        self.server = smtp
        self.server.pipelining = False
        # Over 40 ms a message: each message waits for the commit of the one before it.
        self.server.faults.data_delay = 0.05
        self.release = threading.Event()
        write = MessageQuerySet.record
        first = iter([True])

        def first_write_held(queryset: MessageQuerySet, *args: Any, **kwargs: Any) -> Any:
            if next(first, False):
                self.release.wait(30)  # the first result stays uncommitted until released
            return write(queryset, *args, **kwargs)

        monkeypatch.setattr(MessageQuerySet, "record", first_write_held)

    def commands(self, verb: str) -> int:
        return sum(1 for command, _ in self.server.commands if command == verb)

    def run_in_thread(self, run: Any) -> threading.Thread:
        def target() -> None:
            try:
                run()
            finally:
                connections.close_all()

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    def test_the_next_envelope_goes_before_the_previous_result_is_committed(self) -> None:
        messages = batch(2)
        Message.objects.enqueue(messages)
        done: list[SendCounts] = []
        runner = self.run_in_thread(lambda: done.append(send_all()))
        try:
            wait_until(lambda: self.commands("RCPT") == 2, timeout=10, interval=0.005)
            # The second message is at the server but for its final ".": one delivered.
            assert len(self.server.received) == 1
            assert Message.objects.filter(status=Status.CLAIMED).count() == 2
        finally:
            self.release.set()
            runner.join(30)
        assert done == [SendCounts(sent=2)]
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()

    def test_a_message_called_off_before_its_final_dot_is_not_delivered(self) -> None:
        messages = batch(2)
        Message.objects.enqueue(messages)
        stop = threading.Event()
        engine = Engine("tests-handover", stop=stop)

        def run() -> None:
            try:
                engine.run()
            finally:
                engine.close()

        runner = self.run_in_thread(run)
        try:
            wait_until(lambda: self.commands("RCPT") == 2, timeout=10, interval=0.005)
            stop.set()  # as on SIGTERM: the message waiting for its "." does not go
        finally:
            self.release.set()
            runner.join(30)
        assert len(self.server.received) == 1
        waiting = Message.objects.get()
        assert waiting.status == Status.QUEUED, "given back, not left claimed"
        assert send_all() == SendCounts(sent=1)
        self.assert_each_delivered_once(messages)
        self.assert_queue_empty()

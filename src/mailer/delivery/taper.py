"""Smaller claims as the queue's end nears, so that every worker finishes together.

A connection claims about half a second of work at a time (``CLAIM_SECONDS`` in
``mailer.delivery.engine``). Within one process, a connection that runs out takes a
share of what its siblings still hold (``mailer.delivery.pool``); between processes
and hosts nothing moves. So at the end of a burst, the worker whose claims took the
last full batches went on delivering them alone while the others stood idle: against
a 50 ms relay, the two worker processes of one ``runmailer --concurrency 16``
finished 0.1-0.4 s apart (``bench/relaytrace.py``).

While connections of other workers are alive, each claim first counts the due
messages, no further than a full claim for every connection alive; when fewer are
left, it claims only its even share of them. The last messages then go out one or
two per claim, to whichever connection is free, on whatever worker.

The count is one more short statement per claim, made only while another worker is
alive (``Worker.concurrency`` of the workers alive, read at most once every
``FLEET_SECONDS``). A worker alone shares its end within its own process already.
"""

from __future__ import annotations

import math
import threading
import time

from mailer.queue.claim import due_left
from mailer.queue.message import MessageQuerySet
from mailer.queue.workers import Worker

FLEET_SECONDS = 1.0  # how long the connections alive, as read, are taken as true


class Taper:
    """The claim sizes of one worker's connections at the queue's end."""

    def __init__(self, using: str, connections: int) -> None:
        self.using = using
        self.connections = connections  # this worker's own
        self._lock = threading.Lock()
        self._fleet = connections
        self._read_at: float | None = None

    def size(self, queue: MessageQuerySet, size: int) -> int:
        """What a connection that would claim ``size`` claims now: its even share of what
        is left, when that is less than a full claim for every connection alive."""
        fleet = self.fleet()
        if fleet <= self.connections:
            return size  # alone: its connections share the end among themselves
        enough = size * fleet
        left = due_left(queue, enough)
        if left >= enough:
            return size
        return max(1, math.ceil(left / fleet))

    def fleet(self) -> int:
        """The delivery connections of every worker alive, this one's included."""
        with self._lock:
            read_at = self._read_at
            if read_at is not None and time.monotonic() - read_at < FLEET_SECONDS:
                return self._fleet
        alive = Worker.objects.using(self.using).connections()
        with self._lock:
            self._fleet = max(alive, self.connections)
            self._read_at = time.monotonic()
            return self._fleet


__all__ = ["FLEET_SECONDS", "Taper"]

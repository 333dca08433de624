"""Who holds a claim, keeping it alive, and taking back a dead worker's.

A worker's id is ``host:pid:start`` -- ``start`` being the process start
time the kernel reports, so that a recycled pid is not mistaken for the
worker that died. Each delivery slot of a worker claims as ``id/slot``.
While a worker runs, a background thread renews the leases of everything it
has claimed. When a worker starts, claims of workers on the same host whose
process is gone are returned to the queue at once; claims of workers on
other hosts come back when their lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.db import close_old_connections, connections

from mailer.conf import settings
from mailer.delivery.outage import Outage
from mailer.queue.message import Message

logger = logging.getLogger("mailer.worker")


def _start_ticks(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are plain.
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


@dataclass(frozen=True)
class Identity:
    host: str
    pid: int
    start: str

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    def slot(self, number: int) -> str:
        return f"{self.id}/{number}"

    @classmethod
    def parse(cls, owner: str) -> Identity | None:
        base = owner.split("/", 1)[0]
        try:
            host, pid, start = base.rsplit(":", 2)
            return cls(host, int(pid), start)
        except ValueError:
            return None

    def is_alive(self) -> bool:
        """Is this worker's process still running? Only answerable on its own host."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else
        ticks = _start_ticks(self.pid)
        return ticks is None or self.start in (ticks, "?")


@cache
def _identity_for(pid: int) -> Identity:
    return Identity(socket.gethostname(), pid, _start_ticks(pid) or str(int(time.time())))


def current() -> Identity:
    """This process's identity (recomputed after a fork)."""
    return _identity_for(os.getpid())


def reclaim_dead(using: str = "default") -> int:
    """Return to the queue the claims of dead workers on this host; how many."""
    me = current()
    freed = 0
    for owner in Message.objects.using(using).claim_owners(me.host):
        identity = Identity.parse(owner)
        if identity is None or identity.id == me.id or identity.is_alive():
            continue
        count = Message.objects.using(using).release(owner)
        if count:
            logger.warning(
                "took back %d messages claimed by %s, which is not running", count, owner
            )
        freed += count
    return freed


class LeaseKeeper:
    """A daemon thread that renews this worker's leases until stopped.

    While the database is away it says so through ``outage`` (once) and tries
    again at the next renewal.
    """

    def __init__(
        self,
        owner: str,
        using: str = "default",
        lease: float | None = None,
        outage: Outage | None = None,
    ) -> None:
        self.owner = owner
        self.using = using
        self.lease = lease or settings.LEASE_SECONDS
        self.outage = outage or Outage(logger)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailer-leases", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            # A renewal stuck on an unreachable database is not waited for: the
            # thread is a daemon, and leases end by themselves.
            self._thread.join(timeout=2)

    def _run(self) -> None:
        interval = max(self.lease / 3, 0.2)
        try:
            while not self._stop.wait(interval):
                try:
                    Message.objects.using(self.using).renew_leases(self.owner, self.lease)
                except Exception as error:  # the database may be away: try again next time
                    self.outage.failed("renewing leases", error)
                    close_old_connections()
                else:
                    self.outage.ok("renewing leases")
        finally:
            connections.close_all()

"""One ``runmailer``, several worker processes: its connections spread over the CPUs.

A worker's delivery connections are threads of one Python process, and they take turns
at the interpreter lock: past about ``CONNECTIONS_PER_PROCESS`` of them, each waits
longer for its turn after every reply (measured against a 50 ms relay with
``bench/relaytrace.py``). So ``runmailer --concurrency N`` runs one worker process per
``CONNECTIONS_PER_PROCESS`` connections, no more of them than the machine has CPUs, each
forked once Django is set up and sharing the connections evenly (``--processes`` sets the
count). Each child is a worker of its own (``mailer.runner.worker``): its own identity,
heartbeat, claims and leases, as if started by hand. They coordinate through the queue's
row claims like any other workers.

The parent forwards SIGTERM and SIGINT to the children and waits for them; it adds up
what they did. A child that dies (killed, or failing) stops its siblings, and the parent
then fails (``WorkerProcessFailed``): the service manager restarts the whole worker, and
the next worker on the host takes the dead one's claims back as it starts. A parent
killed outright (SIGKILL) cannot forward anything: each child notices within
``PARENT_CHECK_SECONDS`` and stops as on SIGTERM.

Forking needs ``os.fork`` (not on Windows: there one process runs them all), and no
thread may be running at the fork; the parent holds no database connection across it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.db import connections

from mailer.delivery.tally import SendCounts
from mailer.exceptions import WorkerProcessFailed
from mailer.queue import sql

CONNECTIONS_PER_PROCESS = 8  # beyond this, a worker's connections wait on each other
PARENT_CHECK_SECONDS = 0.5  # how soon a child whose parent died stops
SIGNALS = (signal.SIGTERM, signal.SIGINT)

RunWorker = Callable[..., SendCounts]


def can_fork() -> bool:
    """Can this process fork worker processes safely: ``os.fork`` exists, and no other
    thread runs (a child would inherit the locks it holds, never to be released)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def processes_for(concurrency: int, using: str = "default", cpus: int | None = None) -> int:
    """How many worker processes ``concurrency`` connections are spread over by default:
    one per ``CONNECTIONS_PER_PROCESS``, at most one per CPU; one on SQLite, whose
    writes take turns anyway, and where ``os.fork`` is missing."""
    if not hasattr(os, "fork") or sql.of(using).ONE_WRITER:
        return 1
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(math.ceil(concurrency / CONNECTIONS_PER_PROCESS), cpus))


def shares(concurrency: int, processes: int) -> list[int]:
    """The connections of each process: as even as can be, at least one each."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if number < extra else 0) for number in range(processes)]


def run_processes(run_worker: RunWorker, share: list[int], **options: Any) -> SendCounts:
    """Run ``run_worker(concurrency=n, **options)`` in one forked child per ``n`` of
    ``share``; return what they did together. Raises ``WorkerProcessFailed`` once every
    child has ended, if any of them failed."""
    if not can_fork():
        raise RuntimeError("worker processes are forked before any thread starts")
    connections.close_all()  # each child opens its own
    parent = os.getpid()
    early = threading.Event()  # a signal a child got before its worker could listen
    got_early: list[int] = []
    children: dict[int, int] = {}  # pid -> the read end of its pipe
    received: list[int] = []  # the signals the parent got

    def forward(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != parent:
            # Set once: a second signal may interrupt this handler inside early.set().
            if not got_early:
                got_early.append(signum)
                early.set()
            return
        received.append(signum)
        for pid in list(children):
            _signal(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        for connections_of_child in share:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover -- the child's side; tests see it from outside
                os.close(read)
                _child(run_worker, connections_of_child, early, write, options)
            os.close(write)
            children[pid] = read
        if received:  # got while forking: the children forked since get it too
            for pid in list(children):
                _signal(pid, received[0])
        return _wait(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child(
    run_worker: RunWorker,
    concurrency: int,
    early: threading.Event,
    pipe: int,
    options: dict[str, Any],
) -> None:  # pragma: no cover -- runs in the forked child
    """Run one worker and leave the process: its counts written to ``pipe``, status 0;
    status 1 with the traceback on standard error if it failed."""
    status = 1
    parent = os.getppid()
    watch = threading.Thread(target=_watch, args=(parent,), name="mailer-parent", daemon=True)
    watch.start()
    try:
        counts = run_worker(concurrency=concurrency, stop=early, **options)
        os.write(pipe, " ".join(str(n) for n in counts).encode())
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _watch(parent: int) -> None:  # pragma: no cover -- runs in the forked child
    """Stop this worker, as SIGTERM does, once its parent is gone (killed outright): a
    child is never left delivering on its own."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _wait(children: dict[int, int]) -> SendCounts:
    """Wait for every child (each leaves ``children`` as it is reaped, so that no signal
    goes to a pid reused since); when one fails, stop the others."""
    total = SendCounts()
    failed: list[str] = []
    while children:
        pid, status = os.waitpid(-1, 0)
        read = children.pop(pid, None)
        if read is None:
            continue
        with os.fdopen(read, "rb") as pipe:
            said = pipe.read().split()
        code = os.waitstatus_to_exitcode(status)
        if code == 0 and len(said) == 3:
            total += SendCounts(*(int(n) for n in said))
            continue
        failed.append(f"worker process {pid} " + _ended(code))
        for other in list(children):
            _signal(other, signal.SIGTERM)
    if failed:
        raise WorkerProcessFailed("; ".join(failed) + "; the others were stopped")
    return total


def _ended(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended already
        os.kill(pid, signum)


__all__ = ["CONNECTIONS_PER_PROCESS", "can_fork", "processes_for", "run_processes", "shares"]

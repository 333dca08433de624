"""The send_mail lock: one run at a time on this host, released when the process dies.

``fcntl.flock`` on ``MAILER_LOCK_PATH + ".lock"``: the kernel drops the lock
with the process that held it, so a killed run can never leave a stale lock
that silently stops mail. The lock file itself is left in place (deleting it
would race with a run that just opened it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from .conf import settings
from .exceptions import MailerError


class LockHeld(MailerError):
    """Another send_mail run holds the lock."""


@contextlib.contextmanager
def send_lock(path: str | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold the send_mail lock for the duration of the block (if MAILER_USE_FILE_LOCK).

    ``timeout`` (default ``MAILER_LOCK_WAIT_TIMEOUT``): seconds to wait for
    another run to finish; negative means do not wait.
    """
    if not settings.USE_FILE_LOCK:
        yield
        return
    path = path or settings.lock_file
    wait = settings.LOCK_WAIT_TIMEOUT if timeout is None else timeout
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(wait, 0)
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if wait < 0 or time.monotonic() >= deadline:
                    holder = _read_holder(descriptor)
                    raise LockHeld(f"another send_mail run{holder} holds {path}") from None
                time.sleep(0.1)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _read_holder(descriptor: int) -> str:
    try:
        pid = os.pread(descriptor, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""

"""The send_mail lock: one run at a time on this host, released when the process dies.

``fcntl.flock`` on ``MAILER_LOCK_PATH + ".lock"``: the kernel drops the lock
with the process that held it, so a killed run can never leave a stale lock
that silently stops mail. The lock file itself is left in place (deleting it
would race with a run that just opened it).

Another local user must not be able to steer the lock, so:

* without ``MAILER_LOCK_PATH`` it lives in the running user's own directory
  under the temp directory (:func:`~mailer.conf.default_lock_directory`),
  created with mode 0700 if missing;
* the lock's directory must belong to the running user and be writable by
  no one else, and an existing lock file must be a regular file of the
  running user's, with one link, writable by no one else;
  :exc:`~mailer.exceptions.UnsafeLockPath` otherwise, before anything is
  written;
* the file is opened relative to the checked directory with ``O_NOFOLLOW``
  (a symbolic link is refused, never followed, never truncated) and
  ``O_CLOEXEC``, and created with mode 0600;
* a lock held by a process of another user is an error
  (:exc:`~mailer.exceptions.LockHeldByOtherUser`), not "nothing to do".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass

from mailer.conf import settings
from mailer.exceptions import LockHeld, LockHeldByOtherUser, UnsafeLockPath

__all__ = [
    "LockHeld",
    "LockHeldByOtherUser",
    "LockHolder",
    "UnsafeLockPath",
    "holder",
    "lock_problem",
    "send_lock",
]

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class LockHolder:
    """The process that holds the lock, and its user (None: could not be found out)."""

    pid: int
    uid: int | None

    @property
    def user(self) -> str:
        """The user's name and id, for people."""
        return "unknown" if self.uid is None else _user_name(self.uid)

    @property
    def user_name(self) -> str | None:
        """The user's login name (None: unknown, or an id without a name)."""
        try:
            return None if self.uid is None else pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return None

    @property
    def is_other_user(self) -> bool:
        return self.uid is not None and self.uid != os.geteuid()

    def __str__(self) -> str:
        return f"pid {self.pid}, user {self.user}"


@contextlib.contextmanager
def send_lock(path: str | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold the send_mail lock for the duration of the block (if MAILER_USE_FILE_LOCK).

    ``timeout`` (default ``MAILER_LOCK_WAIT_TIMEOUT``): seconds to wait for
    another run to finish; negative means do not wait. Raises
    :exc:`~mailer.exceptions.LockHeld` when another run of this user holds
    it, :exc:`~mailer.exceptions.LockHeldByOtherUser` when a process of
    another user does, :exc:`~mailer.exceptions.UnsafeLockPath` when the file
    or its directory is not safe to use.
    """
    if not settings.USE_FILE_LOCK:
        yield
        return
    default = path is None and settings.LOCK_PATH is None
    path = path or settings.lock_file
    wait = settings.LOCK_WAIT_TIMEOUT if timeout is None else timeout
    descriptor = _open(path, default=default)
    try:
        deadline = time.monotonic() + max(wait, 0)
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                found = _holder_of(descriptor)
                if found is not None and found.is_other_user:
                    raise LockHeldByOtherUser(
                        f"the send_mail lock {path} is held by a process of another user "
                        f"({found}); no mail is sent as {_user_name(os.geteuid())} while "
                        "it is held"
                    ) from None
                if wait < 0 or time.monotonic() >= deadline:
                    held_by = f" ({found})" if found else ""
                    raise LockHeld(f"another send_mail run{held_by} holds {path}") from None
                time.sleep(0.1)
        # The file is ours (checked in _open): record who holds it, for people and other OSes.
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def lock_problem(path: str, *, default: bool) -> str | None:
    """Why the lock at ``path`` is unsafe to use, or None; creates and opens nothing.

    ``default``: the path is in the per-user default directory (which need not
    exist yet, and may not be a symbolic link).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        info = os.lstat(directory) if default else os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None  # created on first use (default), or mailer.W002 says so
    except OSError as error:
        return f"its directory {directory} cannot be examined: {error.strerror}"
    if default and stat.S_ISLNK(info.st_mode):
        return f"its directory {directory} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return None  # not usable at all: mailer.W002 says so
    problem = _directory_problem(directory, info)
    if problem:
        return problem
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"{path} cannot be examined: {error.strerror}"
    if stat.S_ISDIR(found.st_mode):
        return None  # mailer.W002
    return _file_problem(path, found)


def holder(path: str) -> LockHolder | None:
    """The process holding the lock at ``path`` (None: nobody, or not found out); opens nothing."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return _holder_by_inode(info)


# -- opening -----------------------------------------------------------------------


def _open(path: str, *, default: bool) -> int:
    """Open (creating if missing) the lock file at ``path``, refusing anything unsafe."""
    directory, name = os.path.split(os.path.abspath(path))
    if default:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, DIRECTORY_MODE)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if default else 0)
    try:
        directory_fd = os.open(directory, flags)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeLockPath(
                f"the send_mail lock is not safe: its directory {directory} is not a directory "
                "(a symbolic link or a file); nothing was opened"
            ) from None
        raise
    try:
        problem = _directory_problem(directory, os.fstat(directory_fd))
        if problem:
            raise UnsafeLockPath(f"the send_mail lock is not safe: {problem}; nothing was opened")
        try:
            descriptor = os.open(
                name,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
                dir_fd=directory_fd,
            )
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafeLockPath(
                    f"the send_mail lock is not safe: {path} is a symbolic link; it was not "
                    "followed"
                ) from None
            raise
    finally:
        os.close(directory_fd)
    info = os.fstat(descriptor)
    problem = _file_problem(path, info)
    if problem:
        os.close(descriptor)
        raise UnsafeLockPath(f"the send_mail lock is not safe: {problem}; nothing was written")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(descriptor, FILE_MODE)  # an older lock file: no one else may open it now
    return descriptor


def _directory_problem(directory: str, info: os.stat_result) -> str | None:
    if not stat.S_ISDIR(info.st_mode):
        return f"its directory {directory} is not a directory"
    return _owner_problem(f"its directory {directory}", info)


def _file_problem(path: str, info: os.stat_result) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    problem = _owner_problem(path, info)
    if problem is None and info.st_nlink != 1:
        return f"{path} has {info.st_nlink} hard links"
    return problem


def _owner_problem(what: str, info: os.stat_result) -> str | None:
    """Another user could change ``what``: it is theirs, or they may write it."""
    if info.st_uid != os.geteuid():
        return f"{what} belongs to another user ({_user_name(info.st_uid)})"
    if info.st_mode & _WRITABLE_BY_OTHERS:
        return f"{what} is writable by group or others ({_mode(info)})"
    return None


def _mode(info: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(info.st_mode):04o}"


# -- who holds it --------------------------------------------------------------------


def _holder_of(descriptor: int) -> LockHolder | None:
    found = _holder_by_inode(os.fstat(descriptor))
    if found is not None:
        return found
    # No /proc/locks (not Linux): the pid the last holder wrote, if that process lives.
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit() or not _alive(int(text)):
        return None
    return LockHolder(int(text), _uid_of(int(text)))


def _holder_by_inode(info: os.stat_result) -> LockHolder | None:
    """The holder of a flock on the file ``info`` describes, from Linux's /proc/locks."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 2263 fe:00:1466568 0 EOF"; waiters are marked "->".
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return LockHolder(int(fields[4]), _uid_of(int(fields[4])))
    return None


def _uid_of(pid: int) -> int | None:
    """The effective user id of process ``pid`` (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"

"""The send_mail lock against another local user: links, shared directories, a held lock.

Real files and real processes: symbolic links planted where the lock is opened,
directories of other users or writable by them, and a lock held with ``flock``
by a process that runs as another user (root only: nobody else can switch).
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from mailer.conf import settings as mailer_settings
from mailer.engine import SendCounts, send_all
from mailer.exceptions import (
    LockHeld,
    LockHeldByOtherUser,
    MailerConfigurationError,
    MailerError,
    UnsafeLockPath,
)
from mailer.models import Message
from mailer.runner.lock import send_lock

from . import processes
from .assertions import MailAssertions
from .samples import batch

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "a file the attacker wants destroyed\n"


def lock_at(settings: Any, directory: Path, name: str = "mailer") -> Path:
    settings.MAILER_LOCK_PATH = str(directory / name)
    return directory / f"{name}.lock"


def send_mail_at(lock: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py send_mail`` in its own process, with the lock at ``lock``."""
    return processes.run(["send_mail", *args], port, MAILER_TEST_LOCK_PATH=str(lock)[:-5])


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("mailer_status", *args, stdout=out)
    return out.getvalue()


class TestTheErrors:
    def test_are_mailer_errors_of_the_natural_types(self) -> None:
        assert issubclass(UnsafeLockPath, MailerConfigurationError)
        assert issubclass(UnsafeLockPath, PermissionError)
        assert issubclass(LockHeldByOtherUser, MailerError)
        assert issubclass(LockHeldByOtherUser, PermissionError)
        assert not issubclass(LockHeldByOtherUser, LockHeld)  # never "nothing to do"


class TestLinksAreNeverFollowed(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_a_symlink_to_a_file_is_refused_and_the_file_is_untouched(
        self, settings: Any, tmp_path: Path
    ) -> None:
        victim = tmp_path / "victim.txt"
        victim.write_text(SECRET)
        lock = lock_at(settings, tmp_path)
        lock.symlink_to(victim)
        Message.objects.enqueue(batch(1))
        with pytest.raises(UnsafeLockPath, match="symbolic link"), send_lock():
            pass
        with pytest.raises(UnsafeLockPath):
            send_all()
        done = send_mail_at(lock, self.server.port)
        assert done.returncode == 1
        assert "(mailer.W030)" in done.stderr  # the system checks warn first
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("CommandError: mailer is misconfigured: the send_mail lock is not")
        assert "is a symbolic link" in last
        quiet = send_mail_at(lock, self.server.port, "--skip-checks")
        assert quiet.returncode == 1
        assert len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
        assert victim.read_text() == SECRET  # neither truncated nor written
        assert lock.is_symlink()
        assert not self.server.received
        self.assert_queued(1)

    def test_a_dangling_symlink_creates_nothing_where_it_points(
        self, settings: Any, tmp_path: Path
    ) -> None:
        target = tmp_path / "elsewhere" / "planted"
        target.parent.mkdir()
        lock = lock_at(settings, tmp_path)
        lock.symlink_to(target)
        with pytest.raises(UnsafeLockPath, match="symbolic link"), send_lock():
            pass
        done = send_mail_at(lock, self.server.port)
        assert done.returncode == 1 and "symbolic link" in done.stderr
        assert not target.exists() and not target.is_symlink()
        assert list(target.parent.iterdir()) == []

    def test_a_hard_link_to_another_file_is_refused(self, settings: Any, tmp_path: Path) -> None:
        victim = tmp_path / "victim.txt"
        victim.write_text(SECRET)
        victim.chmod(0o600)
        lock = lock_at(settings, tmp_path)
        os.link(victim, lock)
        with pytest.raises(UnsafeLockPath, match="2 hard links"), send_lock():
            pass
        assert victim.read_text() == SECRET

    def test_a_symlinked_default_directory_is_refused(
        self, default_lock_dir: Path, tmp_path: Path
    ) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        default_lock_dir.symlink_to(elsewhere)
        with pytest.raises(UnsafeLockPath, match="not a directory"), send_lock():
            pass
        assert list(elsewhere.iterdir()) == []


class TestDirectories:
    def test_the_default_directory_is_the_users_own_and_made_private(
        self, default_lock_dir: Path, tmp_path: Path
    ) -> None:
        assert default_lock_dir.parent == tmp_path and str(os.geteuid()) in default_lock_dir.name
        with send_lock():
            info = default_lock_dir.lstat()
            assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            assert stat.S_IMODE(info.st_mode) == 0o700
            lock = Path(mailer_settings.lock_file)
            assert lock.parent == default_lock_dir
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600
            assert lock.read_text() == f"{os.getpid()}\n"

    @pytest.mark.parametrize("mode", [0o770, 0o777, 0o1777, 0o722])
    def test_a_directory_others_may_write_is_refused(
        self, settings: Any, tmp_path: Path, mode: int
    ) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(mode)
        lock_at(settings, shared)
        with pytest.raises(UnsafeLockPath, match="writable by group or others"), send_lock():
            pass
        assert list(shared.iterdir()) == []  # nothing created there

    def test_the_temp_directory_itself_is_refused(self, settings: Any) -> None:
        temp = Path(tempfile.gettempdir())
        if not temp.stat().st_mode & stat.S_IWOTH:
            pytest.fail(f"{temp} is expected to be world-writable, as on every Unix")
        settings.MAILER_LOCK_PATH = str(temp / f"mailer-test-{os.getpid()}")
        with pytest.raises(UnsafeLockPath, match="writable by group or others"), send_lock():
            pass
        assert not Path(mailer_settings.lock_file).exists()

    def test_a_directory_of_another_user_is_refused(self, settings: Any, tmp_path: Path) -> None:
        theirs = processes.another_users_directory(tmp_path)
        lock = lock_at(settings, theirs, f"mailer-test-{os.getpid()}")
        with pytest.raises(UnsafeLockPath, match="belongs to another user"), send_lock():
            pass
        assert not lock.exists()

    @pytest.mark.as_root
    def test_a_default_directory_made_by_another_user_is_refused(
        self, default_lock_dir: Path, tmp_path: Path
    ) -> None:
        planted = default_lock_dir
        planted.mkdir(mode=0o700)
        os.chown(planted, processes.unused_uid(), -1)
        with pytest.raises(UnsafeLockPath, match="belongs to another user"), send_lock():
            pass
        assert list(planted.iterdir()) == []

    @pytest.mark.as_root
    def test_a_lock_file_of_another_user_is_refused_and_left_as_it_was(
        self, settings: Any, tmp_path: Path
    ) -> None:
        lock = lock_at(settings, tmp_path)
        lock.write_text(SECRET)
        os.chown(lock, processes.unused_uid(), -1)
        with pytest.raises(UnsafeLockPath, match="belongs to another user"), send_lock():
            pass
        assert lock.read_text() == SECRET

    def test_an_older_lock_file_readable_by_others_becomes_private(
        self, settings: Any, tmp_path: Path
    ) -> None:
        lock = lock_at(settings, tmp_path)
        lock.write_text("")
        lock.chmod(0o644)  # as earlier versions made it: anyone could open it and flock it
        with send_lock():
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600


class TestAHeldLock(MailAssertions):
    @pytest.fixture(autouse=True)
    def _server(self, smtp: Any) -> None:
        self.server = smtp

    def test_held_by_another_run_of_this_user_is_nothing_to_do(self) -> None:
        Message.objects.enqueue(batch(1))
        lock = mailer_settings.lock_file
        with processes.holding_lock(lock) as pid:
            done = processes.run(["send_mail"], self.server.port)
            assert send_all() == SendCounts()
            shown = status()
            report = json.loads(status("--json"))["lock"]
        assert done.returncode == 0, done.stderr
        assert f"(pid {pid}, user " in done.stdout and "nothing to do" in done.stdout
        assert f"send_mail lock: held by pid {pid}, user " in shown
        assert "another user" not in shown
        assert report["path"] == lock
        assert report["holder"]["pid"] == pid and report["holder"]["uid"] == os.geteuid()
        assert report["holder"]["other_user"] is False
        assert not self.server.received
        assert status().count(f"send_mail lock: free ({lock})") == 1
        assert processes.run(["send_mail"], self.server.port).stdout.startswith("sent 1,")

    @pytest.mark.as_root
    def test_held_by_a_process_of_another_user_is_an_error(self) -> None:
        Message.objects.enqueue(batch(1))
        lock = mailer_settings.lock_file
        uid = processes.unused_uid()
        with send_lock():
            pass  # the lock file exists, root's, mode 0600
        with processes.holding_lock(lock, uid) as pid:
            done = processes.run(["send_mail"], self.server.port)
            with pytest.raises(LockHeldByOtherUser, match=f"pid {pid}, user uid {uid}"):
                send_all()
            shown = status()
            report = json.loads(status("--json"))["lock"]["holder"]
        assert done.returncode == 1
        assert done.stdout == ""
        error = done.stderr.strip()
        assert len(error.splitlines()) == 1, error
        assert f"held by a process of another user (pid {pid}, user uid {uid})" in error
        assert f"send_mail lock: held by pid {pid}, user uid {uid}" in shown
        assert "a process of another user" in shown
        assert report == {"pid": pid, "uid": uid, "user": None, "other_user": True}
        assert not self.server.received
        assert processes.run(["send_mail"], self.server.port).stdout.startswith("sent 1,")

    def test_mailer_status_says_when_the_lock_is_not_used(self, settings: Any) -> None:
        settings.MAILER_USE_FILE_LOCK = False
        assert "send_mail lock: not used" in status()
        assert json.loads(status("--json"))["lock"] is None

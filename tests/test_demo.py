"""The admin demo a new user runs (``bash scripts/demo.sh admin``), as a separate process.

It says what its queue holds, and the admin lists the same; it leaves nothing behind
however it is stopped: Ctrl-C (SIGINT) or a SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .admin_site import AdminSite, free_port
from .processes import ROOT, Child, session_processes, spawn, wait, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

# The admin's state filter, as the demo names the states it prints.
STATES = ("queued", "scheduled", "sending", "deferred", "held", "failed")
SUMMARY = re.compile(
    r"The queue holds (?P<total>\d+) messages \((?P<states>[^)]*)\); "
    r"the log holds (?P<attempts>\d+) attempts\."
)
DATABASE = re.compile(r"SQLite at (?P<path>\S+)/demo\.sqlite3")


class AdminDemo(AdminSite):
    """The running demo: its process, what it printed, and its admin."""

    def __init__(self, argv: list[str], tmp: Path) -> None:
        port = free_port()
        super().__init__(f"http://127.0.0.1:{port}")
        env = {key: value for key, value in os.environ.items() if not key.startswith("MAILER_")}
        env.pop("DJANGO_SETTINGS_MODULE", None)  # the demo's settings, not the tests'
        env["TMPDIR"] = str(tmp)  # where the demo makes its temporary directory
        # A child inherits an ignored SIGINT (as under `nohup` or `... &`), while a handled one
        # is reset to the default when it starts: handle it here for that moment.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.process: Child = spawn([*argv, "--port", str(port)], env, new_session=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    def serving(self) -> bool:
        if self.process.poll() is not None:
            _, err = self.process.output()
            raise AssertionError(f"the demo exited with {self.process.returncode}:\n{err}")
        return self.answers()

    def directory(self) -> Path:
        """The temporary directory the demo said its database is in."""
        found = DATABASE.search(self.process.printed())
        assert found, self.process.printed()
        return Path(found["path"])

    def stop(self) -> None:
        """Whatever is left of it, at once (the tests stop it properly themselves)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self.process.stdout_file.closed:
            self.process.output()  # closes the files it wrote to
        for line in session_processes(self.process.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., AdminDemo]]:
    """Start the admin demo with the given command; stopped at the end whatever happened."""
    started: list[AdminDemo] = []

    def start(*argv: str) -> AdminDemo:
        demo = AdminDemo(list(argv), tmp_path)
        started.append(demo)
        # The first run of scripts/demo.sh sets up its virtualenv: give it time.
        wait_until(demo.serving, timeout=300, interval=0.3)
        return demo

    yield start
    for demo in started:
        demo.stop()


def test_the_admin_demo_prints_what_its_admin_lists(
    start_demo: Callable[..., AdminDemo],
) -> None:
    demo = start_demo(sys.executable, str(ROOT / "demo" / "run.py"), "admin", "--no-worker")
    summary = SUMMARY.search(demo.process.printed())
    assert summary, demo.process.printed()
    printed = {
        state: int(count)
        for count, state in (part.split() for part in summary["states"].split(", "))
    }
    assert set(printed) <= set(STATES), printed
    assert sum(printed.values()) == int(summary["total"])

    demo.log_in("admin")
    assert len(demo.rows("/admin/mailer/message/")) == int(summary["total"])
    listed = {state: len(demo.rows(f"/admin/mailer/message/?state={state}")) for state in STATES}
    assert listed == {state: printed.get(state, 0) for state in STATES}
    assert len(demo.rows("/admin/mailer/messagelog/")) == int(summary["attempts"])

    # The HTML mail stays in the queue, scheduled, so that a worker leaves it there; its
    # page shows the preview.
    scheduled = demo.rows("/admin/mailer/message/?state=scheduled")
    assert [row for row in scheduled if "Spring sale" in row], scheduled
    assert 'class="mailer-preview"' in demo.message_page("Spring sale")


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 0)],
    ids=["SIGTERM", "SIGINT"],
)
def test_the_admin_demo_stopped_by_a_signal_leaves_nothing(
    start_demo: Callable[..., AdminDemo], tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    demo = start_demo("bash", "scripts/demo.sh", "admin")
    directory = demo.directory()
    assert directory.parent == tmp_path and (directory / "demo.sqlite3").exists()

    demo.process.send_signal(sig)
    code, _, err = wait(demo.process, timeout=60, after=f"of {sig.name}")

    assert code == status, err[-3000:]
    assert not directory.exists(), sorted(p.name for p in directory.iterdir())
    assert session_processes(demo.process.pid) == []

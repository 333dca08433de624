"""A real browser against the demo project: Debian's Chromium, driven by Playwright.

The browser is ``/usr/bin/chromium`` (``MAILER_CHROMIUM`` to use another);
``playwright install`` is never needed. Without Chromium or Playwright the
tests are skipped, with the reason; with ``CI=true`` that is a failure.
Screenshots go to ``MAILER_SCREENSHOTS`` (default ``.ci/artifacts/screenshots``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says so, and skips or fails
    expect = None

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MAILER_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; with CI=true the browser tests must run", pytrace=False)
    pytest.skip(reason)


def screenshot_dir() -> Path:
    folder = Path(
        os.environ.get("MAILER_SCREENSHOTS") or ROOT / ".ci" / "artifacts" / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def screenshots() -> Path:
    return screenshot_dir()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if expect is None:
        unavailable("Playwright is not installed (pip install playwright; no browser download)")
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Demo:
    url: str
    log: Path
    var: Path

    def queue_html_mail(self, subject: str, html: str) -> None:
        """Queue an HTML mail in the demo's database, as its site would."""
        code = (
            "import os, mailer; mailer.send_html_mail(os.environ['DEMO_SUBJECT'], 'See the HTML.', "
            "os.environ['DEMO_HTML'], None, ['customer@example.com'])"
        )
        self.shell(code, DEMO_SUBJECT=subject, DEMO_HTML=html)

    def shell(self, code: str, **variables: str) -> None:
        """Run Python ``code`` in the demo project (``manage.py shell -c``), with ``variables``
        in its environment."""
        env = {**os.environ, "MAILER_DEMO_VAR": str(self.var), **variables}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
        )
        command = [sys.executable, str(ROOT / "demo" / "manage.py"), "shell", "-c", code]
        subprocess.run(command, env=env, check=True, timeout=120, capture_output=True)


@pytest.fixture(scope="session")
def demo(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``demo/run.py admin`` on a fresh SQLite database, with no worker delivering."""
    with demo_server(tmp_path_factory.mktemp("demo")) as server:
        yield server


@contextmanager
def demo_server(var: Path) -> Iterator[Demo]:
    """The demo's admin served from ``var`` until the block ends."""
    port = free_port()
    log = var / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, str(ROOT / "demo" / "run.py"), "admin", "--no-worker"]
    command += ["--port", str(port), "--var", str(var)]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/admin/login/", server, log)
        yield Demo(url, log, var)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the demo server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the demo server did not answer within 90 s:\n{log.read_text()}")


class Listener:
    """A TCP port on 127.0.0.1 that answers nothing and counts who connected to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.socket.setblocking(False)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.seen = 0

    def connections(self) -> int:
        """Connections made so far (the kernel keeps them queued until accepted here)."""
        while True:
            try:
                connection, _ = self.socket.accept()
            except BlockingIOError:
                return self.seen
            connection.close()
            self.seen += 1

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Traffic:
    """The URLs the page and its frames asked for, and those that got a response."""

    requested: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser: Any, demo: Demo, traffic: Traffic) -> Iterator[Any]:
    context = browser.new_context(base_url=demo.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("request", lambda request: traffic.requested.append(request.url))
    page.on("response", lambda response: traffic.answered.append(response.url))
    yield page
    context.close()

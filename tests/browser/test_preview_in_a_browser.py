"""The HTML preview in Chromium connects nowhere, not even where the policy would refuse.

A TCP listener on 127.0.0.1 stands in for a remote server (a tracker, a
phishing page): its address is in a frame, an image, a style sheet, an inline
style and a link of an HTML mail. Opening the preview and clicking the link
must not make a single connection to it -- while the same HTML, opened as a
page of its own, does (the check sees what it is meant to see).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .conftest import Demo, Listener, expect
from .test_admin_in_a_browser import log_in, open_message

REMOTE_HTML = """<!doctype html><html><head>
<style>body {{ background-image: url({url}/sheet.png) }}</style>
<link rel="stylesheet" href="{url}/linked.css"></head>
<body><h1>{subject}</h1>
<iframe src="{url}/frame" width="300" height="60"></iframe>
<img src="{url}/pixel.gif" alt="tracking pixel">
<p style="background: url('{url}/inline.png')">Styled paragraph.</p>
<p><a id="offer" href="{url}/offer">See the offer</a></p>
</body></html>"""


def test_the_listener_sees_a_page_that_loads_from_it(page: Any, listener: Listener) -> None:
    """Outside the preview the same HTML connects at once: the check below can see it."""
    html = REMOTE_HTML.format(url=listener.url, subject="Control")
    page.set_content(html, wait_until="domcontentloaded")  # "load" waits on the listener
    deadline = time.monotonic() + 20
    while not listener.connections() and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert listener.connections() > 0


def test_the_preview_connects_nowhere(
    page: Any, demo: Demo, listener: Listener, screenshots: Path
) -> None:
    subject = "Remote everything"
    demo.queue_html_mail(subject, REMOTE_HTML.format(url=listener.url, subject=subject))
    log_in(page)
    open_message(page, subject)
    frame = page.frame_locator("iframe.mailer-preview")
    expect(frame.locator("h1")).to_have_text(subject)
    expect(frame.locator(".mailer-blocked")).to_contain_text(f"{listener.url}/frame")
    expect(frame.locator(".mailer-link-address")).to_have_text(f"[{listener.url}/offer]")
    page.wait_for_load_state("networkidle")
    assert listener.connections() == 0, "showing the preview connected"
    frame.get_by_text("See the offer").click()
    page.wait_for_load_state("networkidle")
    # Checked before anything waits on the frame again: a frame navigating to a server
    # that never answers would keep such a wait from ending.
    assert listener.connections() == 0, "clicking the link connected"
    assert [f.url for f in page.frames if f.url.endswith("/preview/")], "the frame moved"
    assert not [f.url for f in page.frames if f.url.startswith(listener.url)]
    page.locator("iframe.mailer-preview").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "08-preview-connects-nowhere.png"))

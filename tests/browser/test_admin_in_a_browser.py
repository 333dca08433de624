"""The admin as an operator uses it, in Chromium, against the demo project.

The demo's queue holds mail in every state (see ``demo/run.py admin``); no
worker runs, so nothing changes but what these tests do. Each test leaves a
screenshot.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .conftest import Demo, Traffic, expect

DASHBOARD = "/admin/mailer/message/dashboard/"
MESSAGES = "/admin/mailer/message/"


def log_in(page: Any, username: str = "admin") -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", username)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def shoot(page: Any, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / name), full_page=True)


def open_message(page: Any, subject: str) -> None:
    page.goto(f"{MESSAGES}?q={subject.replace(' ', '+')}")
    page.get_by_role("link", name=subject, exact=True).click()
    expect(page.locator("#mailer-headers")).to_contain_text(subject)


def test_dashboard(page: Any, demo: Demo, traffic: Traffic, screenshots: Path) -> None:
    log_in(page)
    page.goto("/admin/mailer/")
    page.get_by_role("link", name="Queue dashboard").click()
    expect(page).to_have_url(re.compile(re.escape(DASHBOARD) + "$"))
    expect(page.locator("h1")).to_have_text("Queue dashboard")
    states = page.locator("#mailer-states")
    expect(states.locator("tr", has_text="failed")).to_contain_text("2")
    expect(states.locator("tr", has_text="held")).to_contain_text("1")
    expect(states.locator("tr", has_text="scheduled")).to_contain_text("2")
    expect(page.locator("#mailer-last-day")).to_contain_text("7 sent")
    expect(page.locator("svg.mailer-chart rect.mailer-bar-sent")).to_have_count(1)
    expect(page.locator("#mailer-failures")).to_contain_text("Recipient address rejected")
    shoot(page, screenshots, "01-dashboard.png")
    assert all(url.startswith(demo.url) for url in traffic.requested), traffic.requested


def test_filter_and_search_the_message_list(page: Any, screenshots: Path) -> None:
    log_in(page)
    page.goto(MESSAGES)
    page.locator("#changelist-filter").get_by_role("link", name="failed", exact=True).click()
    expect(page).to_have_url(re.compile(r"state=failed"))
    results = page.locator("#result_list tbody tr")
    expect(results).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("nobody@example.com")
    expect(page.locator("#result_list")).to_contain_text("(stored data is not valid)")
    shoot(page, screenshots, "02-failed-messages.png")

    page.fill("#searchbar", "greylisted")
    page.press("#searchbar", "Enter")
    expect(results).to_have_count(0)  # still filtered on failed: the greylisted one is deferred
    page.get_by_role("link", name=re.compile("Clear all filters")).click()
    page.fill("#searchbar", "greylisted")
    page.press("#searchbar", "Enter")
    expect(results).to_have_count(1)
    expect(results).to_contain_text("Weekly digest")


def test_a_failed_message(page: Any, screenshots: Path) -> None:
    log_in(page)
    open_message(page, "Your invoice")
    expect(page.locator("#mailer-recipients")).to_contain_text("nobody@example.com")
    expect(page.locator("#mailer-recipients")).to_contain_text("550")
    attempts = page.locator("#mailer-attempts tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts).to_contain_text("Recipient address rejected")
    expect(page.locator("#mailer-content")).to_contain_text("Attached.")
    shoot(page, screenshots, "03-message-detail.png")


def test_retry_now_from_the_list(page: Any, screenshots: Path) -> None:
    log_in(page)
    page.goto(f"{MESSAGES}?state=deferred")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_now")
    page.click("button[name=index]")
    expect(page.locator("ul.messagelist")).to_have_text("1 message retried.")
    shoot(page, screenshots, "04-retry-report.png")
    page.goto(f"{MESSAGES}?state=due")
    expect(page.locator("#result_list")).to_contain_text("Weekly digest")


def test_cancel_from_a_message_page(page: Any, screenshots: Path) -> None:
    log_in(page)
    open_message(page, "Reminder: your appointment")
    page.select_option("select[name='CHANGE_FORM-action']", "cancel_messages")
    page.locator("#content-main button[type=submit]", has_text="Run").click()
    expect(page).to_have_url(re.compile(r"/admin/mailer/messagelog/$"))
    expect(page.locator("ul.messagelist")).to_have_text("1 message cancelled.")
    page.locator("#result_list tr", has_text="Reminder: your appointment").locator("th a").click()
    expect(page.locator("#content-main")).to_contain_text("cancelled in the admin by admin")
    shoot(page, screenshots, "05-cancelled.png")


CONTROL_HTML = """<p id="script-status">script did not run</p>
<img src="{url}/static/admin/img/icon-yes.svg?tracking-pixel">
<script>document.getElementById("script-status").textContent = "SCRIPT RAN";</script>"""


def test_the_checks_below_see_a_script_run_and_an_image_load(
    page: Any, demo: Demo, traffic: Traffic
) -> None:
    """Outside the sandbox and its policy, the same checks see the script and the image."""
    page.set_content(CONTROL_HTML.format(url=demo.url))
    expect(page.locator("#script-status")).to_have_text("SCRIPT RAN")
    page.wait_for_load_state("networkidle")
    assert [url for url in traffic.answered if "tracking-pixel" in url]


def test_a_script_in_an_html_body_does_not_run(
    page: Any, demo: Demo, traffic: Traffic, screenshots: Path
) -> None:
    page.add_init_script(
        "window.__posted = []; addEventListener('message', (e) => window.__posted.push(e.data));"
    )
    log_in(page)
    open_message(page, "Spring sale")
    title = page.title()
    iframe = page.locator("iframe.mailer-preview")
    expect(iframe).to_have_attribute("sandbox", "")
    frame = page.frame_locator("iframe.mailer-preview")
    expect(frame.locator("h1")).to_have_text("Spring sale")
    expect(frame.locator(".offer")).to_contain_text("half price")
    page.wait_for_load_state("networkidle")
    expect(frame.locator("#script-status")).to_have_text("script did not run")
    assert page.title() == title
    assert page.evaluate("window.__posted") == []
    # The body's images and the script's fetch were never loaded (Chromium reports the
    # images as requests blocked by the policy: none of them got an answer).
    assert not [url for url in traffic.requested if "script-ran" in url]
    loaded = [url for url in traffic.answered if "tracking-pixel" in url or "script-ran" in url]
    assert not loaded, loaded
    preview = page.request.get(iframe.get_attribute("src"))
    assert "script-src" not in preview.headers["content-security-policy"]
    assert "default-src 'none'" in preview.headers["content-security-policy"]
    # A full-page screenshot leaves the sandboxed frame (another process) blank: show it in view.
    iframe.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "06-html-preview.png"))


def test_a_viewer_sees_no_body_and_no_actions(page: Any, screenshots: Path) -> None:
    log_in(page, "viewer")
    page.goto(MESSAGES)
    expect(page.locator("#result_list")).to_contain_text("Spring sale")
    expect(page.locator("select[name=action]")).to_have_count(0)
    open_message(page, "Spring sale")
    expect(page.locator("iframe")).to_have_count(0)
    expect(page.locator("#mailer-content")).to_contain_text("Can view the bodies")
    expect(page.locator("#mailer-content")).not_to_contain_text("half price")
    shoot(page, screenshots, "07-view-only.png")

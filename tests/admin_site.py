"""A running admin (the demo's) read over HTTP, as a browser without JavaScript reads it.

Plain standard library, no Django: ``scripts/check_package.py`` uses it too, from a
Python that has no Django, against the demo served by an installed wheel.
"""

from __future__ import annotations

import http.cookiejar
import re
import socket
import urllib.error
import urllib.parse
import urllib.request


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for the server about to start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AdminSite:
    """The admin at ``url`` (``http://host:port``), with a session once logged in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def answers(self) -> bool:
        """Whether the login page is served yet."""
        try:
            with urllib.request.urlopen(f"{self.url}/admin/login/", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def get(self, path: str, data: dict[str, str] | None = None) -> str:
        """The page at ``path`` (POSTed ``data`` if given); a status other than 200 raises."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with self.opener.open(self.url + path, body, timeout=30) as response:
            return str(response.read().decode())

    def log_in(self, username: str) -> None:
        """Log in as one of the demo's users (their password is their name)."""
        form = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token, form
        fields = {"csrfmiddlewaretoken": token[1], "username": username, "password": username}
        page = self.get("/admin/login/", {**fields, "next": "/admin/"})
        assert 'id="logout-form"' in page, f"{username} is not logged in"

    def rows(self, path: str) -> list[str]:
        """The rows of the admin list at ``path`` (none when it shows no table)."""
        table = re.search(
            r'<table id="result_list">.*?<tbody>(.*?)</tbody>', self.get(path), re.DOTALL
        )
        return re.findall(r"<tr.*?</tr>", table[1], re.DOTALL) if table else []

    def message_page(self, subject: str) -> str:
        """The page of the queued message with this subject, found through the list's search."""
        rows = [
            row
            for row in self.rows(f"/admin/mailer/message/?q={urllib.parse.quote_plus(subject)}")
            if subject in row
        ]
        assert len(rows) == 1, f"{len(rows)} queued messages titled {subject!r}"
        link = re.search(r'href="(/admin/mailer/message/\d+/change/[^"]*)"', rows[0])
        assert link, rows[0]
        return self.get(link[1].replace("&amp;", "&"))

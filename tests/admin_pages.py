"""The admin's pages as the tests visit them: users with some permissions, lists, rows."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from django.contrib.auth.models import Permission, User
from django.test import Client

from mailer.models import Message

from .samples import plain

VIEW = ["view_message", "view_messagelog", "view_dontsendentry", "view_worker"]
LIST = "/admin/mailer/message/"
LOG_LIST = "/admin/mailer/messagelog/"


def user_with(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="mailer", codename__in=codenames)
    )
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def queue(email: Any = None, **changes: Any) -> Message:
    (message,) = Message.objects.enqueue([email or plain()])
    if changes:
        Message.objects.filter(pk=message.pk).update(**changes)
        message.refresh_from_db()
    return message


def rows(response: Any) -> list[str]:
    """The ids listed on a change list page."""
    return re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode()) or [
        m for m in re.findall(r'<th class="field-id"><a href="[^"]*">(\d+)</a>', text(response))
    ]


def text(response: Any) -> str:
    return str(response.content.decode())


def visible(response: Any) -> str:
    """The page's text as a reader sees it: no tags, scripts or styles; entities decoded."""
    return _text_of(text(response))


def cells(response: Any, column: str) -> list[str]:
    """The text of one column of a change list (``field-<column>``), row by row."""
    found = re.findall(rf'<td class="field-{column}[^"]*">(.*?)</td>', text(response), flags=re.S)
    return [_text_of(cell).strip() for cell in found]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.hidden += tag in ("script", "style", "template", "svg")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style", "template", "svg")

    def handle_data(self, data: str) -> None:
        if self.hidden <= 0:
            self.parts.append(data)


def _text_of(markup: str) -> str:
    """Text without tags, spaces as spaces (Django's times use no-break spaces)."""
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    return "".join(reader.parts).replace("\xa0", " ")

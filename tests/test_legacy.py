"""The restricted unpickler that reads django-mailer's stored messages (mailer.legacy).

Pickles are made here the way django-mailer made them (base64 of
``pickle.dumps``), with every protocol; the ones that name code must be
refused without running it. tests/test_upgrade.py does the same through a
real django-mailer database.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.functional import _lazy_proxy_unpickle  # type: ignore[attr-defined]
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy, ngettext_lazy

from mailer.exceptions import UndecodableMessage
from mailer.message import codec as storage
from mailer.message import pickles as legacy

from .samples import as_django_mailer_stored

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


class Run:
    """Pickles to ``func(*args)``: what an attacker would store."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return self.func, self.args


def message(**overrides: Any) -> EmailMessage:
    email = EmailMultiAlternatives("Subject", "Body", "from@example.com", ["to@example.com"])
    for name, value in overrides.items():
        setattr(email, name, value)
    return email


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "executed"


def attacks(marker: Path) -> dict[str, Any]:
    """Objects whose pickles run ``touch marker`` when loaded by pickle.loads."""
    command = f"touch {marker}"
    return {
        "os.system": Run(os.system, command),
        "subprocess": Run(subprocess.call, ["touch", str(marker)]),
        "eval": Run(eval, f"__import__('os').system({command!r})"),
        "exec": Run(exec, f"import os; os.system({command!r})"),
        "in a subject": message(subject=Run(os.system, command)),
        "in a lazy subject": message(
            subject=Run(_lazy_proxy_unpickle, os.system, (command,), {}, str)
        ),
        "in a body": message(body=Run(os.system, command)),
        "in a recipient": message(to=[Run(os.system, command)]),
        "in a header": message(extra_headers={"X-Run": Run(os.system, command)}),
        "in an alternative": message(alternatives=[(Run(os.system, command), "text/html")]),
        "in an attachment": message(attachments=[("a.txt", Run(os.system, command), "text/plain")]),
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickles_that_name_code_are_refused_and_never_run(protocol: int, marker: Path) -> None:
    for name, attack in attacks(marker).items():
        data = as_django_mailer_stored(attack, protocol)
        with pytest.raises(UndecodableMessage):
            legacy.convert(data)
        assert not marker.exists(), f"{name} (protocol {protocol}) ran"
    # The same data does run when pickle.loads reads it, as django-mailer did.
    pickle.loads(
        base64.decodebytes(as_django_mailer_stored(attacks(marker)["os.system"], protocol).encode())
    )
    assert marker.exists()


def test_the_refusal_names_what_was_refused(marker: Path) -> None:
    cases = {
        "os.system": "the stored data is a posix.system, not an email message",
        "in a subject": "the message's subject refers to posix.system",
        "in a lazy subject": "a lazy value calls posix.system, which is not allowed",
        "in an attachment": "the message's attachments refers to posix.system",
    }
    found = attacks(marker)
    for name, reason in cases.items():
        with pytest.raises(UndecodableMessage, match=reason):
            legacy.convert(as_django_mailer_stored(found[name]))


def test_names_are_looked_up_only_in_the_allowlist() -> None:
    # GLOBAL opcodes naming attributes of an allowed module's class, or another module.
    for module, name in [
        ("email.message", "Message.__class__"),
        ("email.message", "Message.__init__.__globals__"),
        ("email.utils", "socket"),
        ("email.message", "BytesIO"),  # imported there, not defined there
        ("collections", "abc"),
        ("builtins", "getattr"),
        ("mailer.backend", "DbBackend"),
    ]:
        data = f"c{module}\n{name}\n.".encode()
        loaded = legacy.unpickle(base64.encodebytes(data).decode())
        assert isinstance(loaded, type) and issubclass(loaded, legacy.Placeholder), (module, name)
        assert loaded.refused == f"{module}.{name}"


def test_garbage_is_undecodable_with_the_first_reason() -> None:
    with pytest.raises(UndecodableMessage, match="not a readable pickle"):
        legacy.convert("bm90IGEgcGlja2xl\n")
    with pytest.raises(UndecodableMessage, match="not django-mailer data"):
        legacy.convert("Grüße")


@pytest.mark.parametrize("protocol", PROTOCOLS[2:])  # Django cannot pickle lazy text with 0, 1
def test_what_django_mailer_stored_converts(protocol: int) -> None:
    email = message(
        subject=gettext_lazy("This field is required."),
        body=mark_safe("<p>Body</p>"),
        extra_headers={"X-Count": ngettext_lazy("%(n)s file", "%(n)s files", 3)},
    )
    email.attach_alternative(mark_safe("<p>HTML</p>"), "text/html")
    email.attach("a.pdf", b"%PDF\x00\xff", "application/pdf")
    email.__dict__["connection"] = "a pickled backend, never needed again"
    doc = json.loads(legacy.convert(as_django_mailer_stored(email, protocol)))
    assert doc["subject"] == "This field is required."  # tests run in English
    assert doc["body"] == "<p>Body</p>"
    assert doc["headers"]["X-Count"] == "%(n)s files"
    assert doc["alternatives"] == [["<p>HTML</p>", "text/html"]]
    assert storage.decode(json.dumps(doc)).attachments[0].content == b"%PDF\x00\xff"


def test_lazy_text_is_translated_in_language_code(settings: Any) -> None:
    settings.LANGUAGE_CODE = "de"
    doc = json.loads(
        legacy.convert(
            as_django_mailer_stored(message(subject=gettext_lazy("This field is required.")))
        )
    )
    assert doc["subject"] == "Dieses Feld ist zwingend erforderlich."


class ProjectEmail(EmailMultiAlternatives):
    """A project's own message class, which MAILER_MESSAGE_CLASSES does not list."""


def test_a_message_of_a_refused_class_is_rebuilt_from_its_attributes() -> None:
    email = ProjectEmail("Subject", "Body", "from@example.com", ["to@example.com"])
    email.attach_alternative("<p>HTML</p>", "text/html")
    rebuilt = legacy.to_email(legacy.unpickle(as_django_mailer_stored(email)))
    assert type(rebuilt) is EmailMultiAlternatives
    assert (rebuilt.subject, rebuilt.body, rebuilt.to) == ("Subject", "Body", ["to@example.com"])
    assert rebuilt.alternatives == [("<p>HTML</p>", "text/html")]


def test_a_refused_object_outside_the_content_is_dropped(marker: Path) -> None:
    email = message(tags=["a"])
    email.anymail_status = Run(os.system, f"touch {marker}")  # type: ignore[attr-defined]
    doc = json.loads(legacy.convert(as_django_mailer_stored(email)))
    assert doc["attrs"] == {"tags": ["a"]}
    assert not marker.exists()


def test_any_failure_to_read_is_this_messages_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def overflow(email: EmailMessage) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(storage, "to_document", overflow)
    with pytest.raises(UndecodableMessage, match="RecursionError"):
        legacy.convert(as_django_mailer_stored(message()))


def test_content_newer_than_the_pickle_gets_its_default() -> None:
    email = message()
    del email.reply_to, email.cc  # as pickled by a Django without them
    doc = json.loads(legacy.convert(as_django_mailer_stored(email)))
    assert (doc["reply_to"], doc["cc"], doc["to"]) == ([], [], ["to@example.com"])


class Status:
    """Like Anymail's AnymailStatus: a result object, outside the allowlist."""


class StatusEmail(EmailMultiAlternatives):
    """Like AnymailMessage: listed in MAILER_MESSAGE_CLASSES, with a status attribute."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status = Status()


def test_a_dropped_attribute_is_not_put_back(settings: Any) -> None:
    settings.MAILER_MESSAGE_CLASSES = [f"{__name__}.StatusEmail"]
    email = StatusEmail("Subject", "Body", "from@example.com", ["to@example.com"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a MailerWarning would say an attribute was dropped
        doc = json.loads(legacy.convert(as_django_mailer_stored(email)))
    assert doc["class"] == f"{__name__}.StatusEmail"
    assert "attrs" not in doc


def test_the_oldest_format_a_pickle_without_base64_converts() -> None:
    doc = json.loads(legacy.convert(pickle.dumps(message(), 0).decode("ascii")))
    assert (doc["subject"], doc["to"]) == ("Subject", ["to@example.com"])

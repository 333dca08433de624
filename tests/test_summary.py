"""The display summary of stored data: never fails, whatever the row holds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.exceptions import UndecodableMessage
from mailer.message import codec as storage
from mailer.message.summary import document_summary
from mailer.models import Message, MessageLog

from .samples import non_ascii

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# The machine running the suite is shared; the first draws can be slow to build.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Documents that claim to be ours, with any value under the keys the summary reads.
odd_documents = st.fixed_dictionaries(
    {"v": st.just(storage.FORMAT_VERSION)},
    optional={
        key: json_values for key in ("subject", "from_email", "to", "cc", "bcc", "headers", "body")
    },
)


def assert_displayable(summary: dict[str, Any]) -> None:
    for key in ("subject", "from_email"):
        assert isinstance(summary[key], str)
    for key in ("to", "cc", "bcc"):
        assert all(isinstance(item, str) for item in summary[key])
    assert summary["message_id"] is None or isinstance(summary["message_id"], str)


def test_a_real_message_is_summarised_as_stored() -> None:
    email = non_ascii()
    email.extra_headers["Message-ID"] = "<abc@example.com>"
    summary = document_summary(storage.encode(email))
    assert summary == {
        "subject": email.subject,
        "from_email": "Jürgen Müller <juergen@example.com>",
        "to": ["Zoë Åberg <zoe@example.com>"],
        "cc": ["cc@example.com"],
        "bcc": ["hidden@example.com"],
        "message_id": "<abc@example.com>",
    }


@relaxed
@given(odd_documents)
def test_any_document_of_ours_gives_strings(doc: dict[str, Any]) -> None:
    assert_displayable(document_summary(json.dumps(doc)))


@relaxed
@given(st.text() | json_values.map(json.dumps))
def test_anything_else_gives_an_empty_summary_or_strings(data: str) -> None:
    summary = document_summary(data)
    if summary:
        assert_displayable(summary)


def test_deeply_nested_data_is_not_ours() -> None:
    assert document_summary("[" * 100_000 + "]" * 100_000) == {}


@relaxed
@given(odd_documents)
def test_models_describe_odd_rows(doc: dict[str, Any]) -> None:
    data = json.dumps(doc)
    message = Message(message_data=data)
    assert isinstance(str(message), str)
    assert isinstance(message.subject, str)
    log = MessageLog(message_data=data, priority=2, result="3")
    assert isinstance(str(log), str)


def test_deeply_nested_data_cannot_be_decoded() -> None:
    with pytest.raises(UndecodableMessage):
        storage.decode("[" * 100_000 + "]" * 100_000)

"""The renderer's quoted-printable is byte for byte the standard library's.

``mailer.message.modern.quoted_printable`` takes a shorter way for text with
nothing to quote; the bytes must be exactly ``quoprimime.body_encode(text, 78)``,
which ``email.contentmanager`` (Django 6) sends. (tests/test_render.py compares
decoded payloads, which cannot see where a soft line break falls.)
"""

from __future__ import annotations

from email import quoprimime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.message.modern import quoted_printable

# Mostly what is kept as it is, with blanks and line ends at any place, and now and
# then what is quoted ("=", controls, Latin-1): both ways are taken.
KEPT = "abcXYZ019.,;:!?<>-_~ "
CHARS = st.sampled_from([*KEPT, " ", "\t", "\n", "\r", "\r\n", "=", "\x0b", "\x85", "é", "ÿ"])
LINES = st.lists(
    st.one_of(
        st.text(st.sampled_from(KEPT), max_size=250),
        st.lists(CHARS, max_size=250).map("".join),
    ),
    max_size=6,
)


@given(LINES, st.sampled_from(["", "\n", "\r\n", " ", "\t", "  \n"]))
def test_same_as_the_standard_library(lines: list[str], end: str) -> None:
    text = "\n".join(lines) + end
    assert quoted_printable(text) == quoprimime.body_encode(text, 78)


@pytest.mark.parametrize("length", [0, 1, 76, 77, 78, 79, 80, 81, 154, 155, 156, 157, 158, 235])
@pytest.mark.parametrize("blank", ["", " ", "\t", "  "])
@pytest.mark.parametrize("end", ["", "\n", "\r\n", "\r"])
def test_line_lengths_around_the_breaks(length: int, blank: str, end: str) -> None:
    """Every case of the trailing blank (room for "=20", for the blank and "=", or
    neither) at every distance from a soft line break."""
    text = "x" * length + blank + end
    expected = quoprimime.body_encode(text, 78)
    assert quoted_printable(text) == expected
    assert quoted_printable(text + "next line\n") == quoprimime.body_encode(
        text + "next line\n", 78
    )


def test_text_with_something_to_quote_is_the_standard_librarys() -> None:
    text = "a" * 90 + "=" + "b" * 90 + "\n"
    assert quoted_printable(text) == quoprimime.body_encode(text, 78)
    assert "=3D" in quoted_printable(text)

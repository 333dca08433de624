"""Header fields as RFC 5322 text: folding, encoded words, addresses, parameters.

The encoders Django 6's headers need, written for speed instead of going
through Python's policy-based header classes: text is folded at its own
whitespace (RFC 5322 2.2.3), text that is not printable ASCII travels as
UTF-8 encoded words (RFC 2047), domains as IDNA, and file names as RFC 2231
parameters, continued over several lines when long. Lines are kept to 78
octets where the text allows it, and never pass 998.

Addresses are read by a strict grammar covering what people write (``a@b.c``,
``Name <a@b.c>``, ``"Name, Quoted" <a@b.c>``); anything else (comments,
groups, quoted local parts...) raises :class:`~mailer.message.tree.Unsupported`,
so Django's own parser handles it.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from django.utils.encoding import punycode

from mailer.message.tree import CRLF, FOLD_AT, MAX_LINE, Unsupported

# Longest encoded word (RFC 2047 2) and its "=?utf-8?q?" + "?=" frame.
_WORD_MAX = 75
_FRAME = 12
# Text that may go into a header as it is: printable ASCII and tab.
_RAW = re.compile(r"[\x20-\x7e\t]*")
_BLANKS = re.compile(r"([ \t]*)([^ \t]+)")
_LONG_BLANKS = re.compile(r"[ \t]{70}")
# Q encoding limited to the characters RFC 2047 5(3) allows in a phrase, so
# the same words serve display names and unstructured text.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = [chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]


def fold(name: str, pieces: Sequence[tuple[str, str]]) -> bytes:
    """``name: `` and ``pieces``, each (blanks, text), folded before blanks past 78 octets.

    The first piece always stays on the first line: a field whose first line
    holds nothing would read back with a leading space.
    """
    if not pieces:
        return f"{name}:\r\n".encode("ascii")
    lines: list[str] = []
    line = f"{name}: {pieces[0][1]}"
    for blanks, text in pieces[1:]:
        if blanks and len(line) + len(blanks) + len(text) > FOLD_AT:
            lines.append(line)
            line = blanks + text
        else:
            line += blanks + text
    lines.append(line)
    if any(len(line) > MAX_LINE for line in lines):
        raise Unsupported(f"the {name} header has a word too long for a line")
    return "\r\n".join(lines).encode("ascii") + CRLF


def encoded_words(text: str, first: int = _WORD_MAX) -> list[str]:
    """``text`` as UTF-8 encoded words, the first at most ``first`` characters long.

    Q or B, whichever is shorter for the whole text. Each word holds whole
    characters: readers decode each word on its own.
    """
    data = text.encode("utf-8")
    q_pieces = ["".join(_Q_BYTE[b] for b in char.encode("utf-8")) for char in text]
    if sum(map(len, q_pieces)) <= (len(data) + 2) // 3 * 4:
        return _q_words(q_pieces, first)
    return _b_words(text, first)


def _q_words(pieces: list[str], first: int) -> list[str]:
    words: list[str] = []
    room = max(first, 24) - _FRAME
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > room:
            words.append(f"=?utf-8?q?{current}?=")
            current, room = "", _WORD_MAX - _FRAME
        current += piece
    words.append(f"=?utf-8?q?{current}?=")
    return words


def _b_words(text: str, first: int) -> list[str]:
    words: list[str] = []
    room = max(first, 24) - _FRAME
    current = b""
    for char in text:
        data = char.encode("utf-8")
        if current and (len(current) + len(data) + 2) // 3 * 4 > room:
            words.append(f"=?utf-8?b?{base64.b64encode(current).decode('ascii')}?=")
            current, room = b"", _WORD_MAX - _FRAME
        current += data
    words.append(f"=?utf-8?b?{base64.b64encode(current).decode('ascii')}?=")
    return words


def unstructured(name: str, value: str) -> bytes:
    """A text field (Subject, X-...) as Django 6 sends it.

    Leading blanks are dropped (readers drop them too); printable ASCII is
    folded at its blanks; anything else, or a word too long for a line,
    becomes encoded words, which fold anywhere.
    """
    if "=?" in value:
        raise Unsupported("text that looks like an encoded word")
    if _LONG_BLANKS.search(value):
        raise Unsupported("a run of blanks longer than a line, which Python's folder encodes")
    value = value.lstrip(" \t")
    if not value:
        return f"{name}:\r\n".encode("ascii")
    if _RAW.fullmatch(value):
        if len(name) + 2 + len(value) <= FOLD_AT:
            return f"{name}: {value}\r\n".encode("ascii")
        pieces = _BLANKS.findall(value)
        tail = value[len(value.rstrip(" \t")) :]
        if tail:
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + tail)
        try:
            folded = fold(name, pieces)
        except Unsupported:
            pass  # a word longer than a line: encoded words split it
        else:
            if name == "Subject" and max(map(len, folded.split(CRLF))) > FOLD_AT:
                # A word too long for a folded line stays whole here (a URL in
                # List-Unsubscribe must); in a Subject, text for people, Django's
                # folder encodes it so every line keeps within 78 octets.
                raise Unsupported("a Subject with a word longer than a folded line")
            return folded
    words = encoded_words(value, first=_first_room(name))
    return fold(name, [(" ", word) for word in words])


def _first_room(name: str) -> int:
    """How long the encoded word on a field's first line may be."""
    if len(name) > MAX_LINE - 100:
        raise Unsupported("a header name too long for a line")
    return min(_WORD_MAX, FOLD_AT - len(name) - 2)


# -- Addresses ---------------------------------------------------------------------

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LOCAL = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
_DOMAIN = r"[^\s\x00-\x1f\x7f@<>()\[\]\\,;:\".]+(?:\.[^\s\x00-\x1f\x7f@<>()\[\]\\,;:\".]+)*"


def _addr_spec(local: str, domain: str) -> str:
    return rf"(?P<{local}>{_LOCAL})@(?P<{domain}>{_DOMAIN})"


# A word of a display name: anything but blanks, controls and RFC 5322 specials.
_WORD = r'[^ \t\x00-\x1f\x7f"(),.:;<>@\[\]\\]+'
_QUOTED = r'"(?P<quoted>(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*)"'
_MAILBOX = re.compile(
    rf"[ \t]*(?:{_addr_spec('local', 'domain')}|"
    rf"(?:(?P<phrase>{_WORD}(?: {_WORD})*)|{_QUOTED})?[ \t]*<{_addr_spec('alocal', 'adomain')}>)"
    r"[ \t]*"
)
_ESCAPED = re.compile(r"\\(.)")
_QUOTED_MAX = 75
_PHRASE = re.compile(rf"{_WORD}(?: {_WORD})*")


_MESSAGE_ID = re.compile(rf"<{_LOCAL}@{_LOCAL}>")


def message_id(text: str) -> str:
    """``text`` if it is a Message-ID of the usual ``<left@right>`` form, else Unsupported."""
    if not _MESSAGE_ID.fullmatch(text):
        raise Unsupported("an unusual Message-ID")
    return text


@dataclass(frozen=True)
class Mailbox:
    """One address: display name ('' for none), local part, domain (possibly non-ASCII)."""

    name: str
    local: str
    domain: str

    @property
    def addr_spec(self) -> str:
        """``local@domain`` with the domain in IDNA, as it goes in a header without SMTPUTF8."""
        domain = self.domain if self.domain.isascii() else _idna(self.domain)
        return f"{self.local}@{domain}"


@functools.lru_cache(maxsize=4096)
def _idna(domain: str) -> str:
    try:
        return punycode(domain)
    except UnicodeError:
        raise Unsupported("a domain that is not valid IDNA") from None


@functools.lru_cache(maxsize=4096)
def mailbox(text: str) -> Mailbox:
    """The one address in ``text``; Unsupported for any form beyond the strict grammar."""
    match = _MAILBOX.fullmatch(text)
    if match is None:
        raise Unsupported("an address form left to Django's parser")
    if match["local"] is not None:
        return Mailbox("", match["local"], match["domain"])
    name = match["phrase"] or ""
    if match["quoted"] is not None:
        name = _ESCAPED.sub(r"\1", match["quoted"])
        if "  " in name or name != name.strip(" ") or "\t" in name:
            raise Unsupported("a quoted display name with runs of blanks")
    if "=?" in name:
        raise Unsupported("a display name that looks like an encoded word")
    return Mailbox(name, match["alocal"], match["adomain"])


def mailboxes(text: str) -> list[Mailbox]:
    """The addresses of a header's comma-separated list."""
    found = [mailbox(part) for part in _split(text)]
    if not found:
        raise Unsupported("an address header without an address")
    return found


def _split(text: str) -> list[str]:
    """``text`` cut at commas outside quoted strings.

    (A comma inside angle brackets leaves no valid address on either side,
    which :func:`mailbox` then refuses.)
    """
    if '"' not in text and "\\" not in text:
        return text.split(",")
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def address_field(name: str, boxes: Sequence[Mailbox]) -> bytes:
    """An address field (From, To...) as Django 6 sends it, one mailbox after another."""
    pieces: list[tuple[str, str]] = []
    for index, box in enumerate(boxes):
        words = _mailbox_words(box, _first_room(name) if index == 0 else _WORD_MAX)
        if index < len(boxes) - 1:
            words[-1] += ","
        pieces += [(" ", word) for word in words]
    return fold(name, pieces)


def _mailbox_words(box: Mailbox, first: int) -> list[str]:
    addr_spec = box.addr_spec
    if not box.name:
        return [addr_spec]
    if _PHRASE.fullmatch(box.name) and box.name.isascii():
        words = box.name.split(" ")
        if max(map(len, words)) > _QUOTED_MAX:
            # Python's folder (Django 6) breaks the header at a longer one.
            raise Unsupported("a word of a display name longer than a line")
        return [*words, f"<{addr_spec}>"]
    if _RAW.fullmatch(box.name) and "\t" not in box.name:
        escaped = box.name.replace("\\", "\\\\").replace('"', '\\"')
        if len(escaped) > _QUOTED_MAX:
            # Python's folder (Django 6) drops the quotes of a longer one.
            raise Unsupported("a quoted display name longer than a line")
        return [f'"{escaped}"', f"<{addr_spec}>"]
    return [*encoded_words(box.name, first), f"<{addr_spec}>"]


# -- Parameters --------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def is_token(text: str) -> bool:
    """Is ``text`` an RFC 2045 token (a MIME type's halves, a disposition)?"""
    return len(text) < 100 and _TOKEN.fullmatch(text) is not None


def disposition(kind: str, filename: str) -> bytes:
    """``Content-Disposition: kind; filename=...``: quoted if printable ASCII, else RFC 2231.

    Too long for a line, the name is continued over numbered parameters
    (``filename*0*``, ``filename*1*``...), which readers join again.
    """
    head = f"Content-Disposition: {kind};"
    if _RAW.fullmatch(filename) and "\t" not in filename:
        param = 'filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        param = "filename*=utf-8''" + quote(filename, safe="", encoding="utf-8")
    if len(head) + 1 + len(param) <= FOLD_AT:
        return f"{head} {param}\r\n".encode("ascii")
    if len(param) + 1 <= FOLD_AT:
        return f"{head}\r\n {param}\r\n".encode("ascii")
    return continued(head, "filename", filename)


def continued(head: str, name: str, value: str) -> bytes:
    """``head`` followed by parameter ``name`` as RFC 2231 continuations, one per line."""
    # Each section is decoded on its own: a character is never cut between two.
    sections = [""]
    for char in value:
        encoded = quote(char, safe="", encoding="utf-8")
        if len(sections[-1]) + len(encoded) > 56:
            sections.append("")
        sections[-1] += encoded
    lines = [head]
    for index, section in enumerate(sections):
        prefix = "utf-8''" if index == 0 else ""
        end = ";" if index < len(sections) - 1 else ""
        lines.append(f" {name}*{index}*={prefix}{section}{end}")
    return "\r\n".join(lines).encode("ascii") + CRLF

"""A MIME tree as bytes: parts, boundaries and line ends.

Every part is built already encoded: its header fields folded, its content
transfer-encoded, with CRLF line ends. Serialising it only joins the pieces
and picks boundaries, as Python's generator does (and with the same look:
``===============<19 digits>==``).
"""

from __future__ import annotations

import binascii
import random
import re
import sys
from dataclasses import dataclass, field

CRLF = b"\r\n"
# RFC 5322 2.1.1: a line MUST be no longer than 998 octets, SHOULD be no longer than 78.
MAX_LINE = 998
FOLD_AT = 78

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


class Unsupported(Exception):
    """The document asks for something this renderer does not do: Django renders it."""


@dataclass
class Part:
    """One MIME part: a leaf with its ``body``, or a multipart with ``parts``.

    ``headers`` are complete fields ("Name: value" + CRLF, folded); in a
    multipart, None stands where its Content-Type goes, written once the
    boundary is known.
    """

    headers: list[bytes | None]
    body: bytes = b""
    parts: list[Part] = field(default_factory=list)
    subtype: str = ""
    raw: bytes | None = None  # a part sent exactly as stored (headers and all)

    @property
    def is_multipart(self) -> bool:
        return bool(self.subtype)


def field_line(name: str, value: str) -> bytes:
    """An unfolded header field of ASCII text."""
    return f"{name}: {value}\r\n".encode("ascii")


def crlf(data: bytes) -> bytes:
    """``data`` with every line end (CR, LF or CRLF) made CRLF, as the generator writes it."""
    if b"\r" not in data:
        return data.replace(b"\n", CRLF)
    return _LINE_ENDS.sub(CRLF, data)


def base64_lines(data: bytes) -> bytes:
    """``data`` in base64, 76 characters a line, as ``base64.encodebytes`` but with CRLF."""
    if not data:
        return b""
    encoded = memoryview(binascii.b2a_base64(data, newline=False))
    return CRLF.join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + CRLF


def longest_line(data: bytes) -> int:
    """The length of the longest line of ``data`` (CRLF line ends), in octets."""
    if len(data) <= MAX_LINE:
        return max(len(line) for line in data.split(CRLF))
    return max(map(len, data.split(CRLF)))


def serialise(part: Part) -> bytes:
    """The bytes of ``part``: header fields, a blank line, then its content."""
    if part.raw is not None:
        return part.raw
    if not part.is_multipart:
        return b"".join(h for h in part.headers if h is not None) + CRLF + part.body
    children = [serialise(child) for child in part.parts]
    boundary = _boundary(children)
    content_type = _multipart_type(part.subtype, boundary)
    head = b"".join(content_type if h is None else h for h in part.headers)
    delimiter = b"--" + boundary.encode("ascii")
    pieces = [head, CRLF, delimiter, CRLF, children[0]]
    for child in children[1:]:
        pieces += [CRLF, delimiter, CRLF, child]
    pieces += [CRLF, delimiter, b"--", CRLF]
    return b"".join(pieces)


def _boundary(children: list[bytes]) -> str:
    """A random boundary found in none of ``children``."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        token = boundary.encode("ascii")
        if not any(token in child for child in children):
            return boundary


def _multipart_type(subtype: str, boundary: str) -> bytes:
    line = f'Content-Type: multipart/{subtype}; boundary="{boundary}"'
    if len(line) <= FOLD_AT:
        return line.encode("ascii") + CRLF
    return f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n'.encode("ascii")

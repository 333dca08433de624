"""The HTML preview: an email's HTML rewritten so that showing it reaches nothing remote.

The admin serves the preview in a sandboxed iframe, under a policy that
runs no script and loads nothing but ``data:`` images. That is not enough on
its own: a browser opens a connection for an ``<iframe src>`` before the
policy refuses the frame, and a link clicked in the preview loads the remote
page inside it. So the HTML is rewritten too -- parsed with the standard
library's ``html.parser`` and written back keeping only what cannot reach the
network:

* elements that load, embed or redirect (``iframe``, ``object``, ``embed``,
  ``link``, ``base``, ``meta``, ``script``...) are dropped; a frame or an embed
  leaves a note saying what it would have loaded;
* only presentational attributes are kept (no ``src``, ``href``, ``srcset``,
  ``poster``, ``background``, ``action``, ``data``, ``xlink:href``, no event
  handler);
* an image keeps its source only as a ``data:`` image; a ``cid:`` reference to
  an image of the message becomes one; a remote image shows its ``alt`` text
  and says it was not loaded;
* a link keeps its text and shows its address as text after it: it goes
  nowhere when clicked (``#fragment`` links within the message stay);
* CSS, in ``<style>`` and ``style=""``, loses every function that could fetch
  (``url()``, ``image-set()``, ``src()``... anything not known to be harmless)
  and every at-rule but ``@media``, ``@supports``, ``@keyframes``, ``@page``.

What is written back is quoted and escaped by this module, so the browser
parses it as it was parsed here.
"""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser

# Dropped with everything inside them.
SKIPPED = frozenset({"script", "template", "noembed", "noframes"})
# Dropped with everything inside them, leaving a note of what they would have loaded.
EMBEDS = frozenset(
    {"iframe", "frame", "frameset", "object", "embed", "applet", "portal", "fencedframe"}
)
# Dropped; their content, if any, is kept.
DROPPED = frozenset({"base", "link", "meta", "param", "source", "track", "plaintext", "xmp"})
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr", "keygen", "frame"}
)
# Attributes that cannot load anything, whatever their value.
PLAIN_ATTRIBUTES = frozenset(
    {
        "abbr", "align", "alt", "axis", "bgcolor", "border", "cellpadding", "cellspacing",
        "char", "charoff", "checked", "class", "clear", "color", "cols", "colspan", "compact",
        "datetime", "dir", "disabled", "face", "frame", "headers", "height", "hidden",
        "hspace", "id", "label", "lang", "maxlength", "multiple", "name", "noshade", "nowrap",
        "open", "placeholder", "readonly", "rel", "reversed", "role", "rows", "rowspan",
        "rules", "scope", "selected", "size", "span", "start", "summary", "title", "type",
        "valign", "value", "vspace", "width", "xml:lang",
        # SVG geometry
        "cx", "cy", "d", "points", "r", "rx", "ry", "transform", "viewbox", "x", "x1", "x2",
        "y", "y1", "y2",
    }
)  # fmt: skip
# Attributes whose value is CSS: kept once cleaned like a style sheet.
CSS_ATTRIBUTES = frozenset({"style", "fill", "stroke", "stop-color"})
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[:_.-][a-z0-9]+)*")
_EXTENSION_ATTRIBUTE = re.compile(r"(?:aria|data)-[a-z0-9_.-]+")


def render(source: str, inline_images: dict[str, tuple[str, bytes]] | None = None) -> str:
    """``source`` rewritten to load nothing remote; ``cid:`` images from ``inline_images``."""
    writer = _Writer(inline_images or {})
    try:
        writer.feed(source)
        writer.close()
    except Exception:  # html.parser may stumble on hostile markup (AssertionError...)
        return (
            '<p class="mailer-note">This HTML could not be read for a safe preview: '
            "see its source below.</p>"
        )
    return writer.result()


class _Writer(HTMLParser):
    """Writes back what it parses, keeping only what loads nothing."""

    def __init__(self, inline_images: dict[str, tuple[str, bytes]]) -> None:
        super().__init__(convert_charrefs=True)
        self.inline_images = inline_images
        self.out: list[str] = []
        self.skipping: list[str] = []  # the element being skipped, once per nesting level
        # Open links: the address not followed (None: none), and their text so far.
        self.links: list[tuple[str | None, list[str]]] = []
        self.style: list[str] | None = None  # the text of the open <style>, cleaned at its end

    def result(self) -> str:
        if self.style is not None:  # a <style> left open
            self._end_style()
            self.out.append("</style>")
        while self.links:
            self._close_link()
        return "".join(self.out)

    # -- Tags --

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # As browsers do: "/>" closes nothing in HTML; a void element has no content anyway.
        self._start(tag, attrs, closed=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> None:
        if self.skipping:
            if tag == self.skipping[-1] and not closed:
                self.skipping.append(tag)
            return
        if tag in SKIPPED or tag in EMBEDS:
            if tag in EMBEDS:
                self._note_embed(tag, attrs)
            if not closed and tag not in VOID:
                self.skipping.append(tag)
            return
        if tag in DROPPED or not _NAME.fullmatch(tag):
            return
        kept = self._attributes(tag, attrs)
        if tag == "a":
            address = (dict(attrs).get("href") or "").strip()
            if address.startswith("#"):  # a place in the message itself
                kept.append(("href", address))
                address = ""
            elif address:
                kept = [(n, v) for n, v in kept if n != "title"]
                kept.append(("title", f"Link to {address} (not followed in the preview)"))
            self.links.append((address or None, []))
        # "/>" is kept for SVG and MathML, where it closes the element; HTML ignores it.
        self.out.append(f"<{tag}{_attributes_text(kept)}{' /' if closed else ''}>")
        if tag == "style":
            # Browsers read what follows <style> as CSS, even after "<style/>".
            if closed:
                self.out.append("</style>")
            else:
                self.style = []

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in SKIPPED or tag in EMBEDS or tag in DROPPED or tag in VOID:
            return
        if not _NAME.fullmatch(tag):
            return
        if tag == "style":
            self._end_style()
        self.out.append(f"</{tag}>")
        if tag == "a" and self.links:
            self._close_link()

    def _end_style(self) -> None:
        if self.style is not None:
            self.out.append(clean_css("".join(self.style)))
            self.style = None

    def _close_link(self) -> None:
        address, words = self.links.pop()
        if address is not None and "".join(words).strip() != address:
            shown = html.escape(address)
            self.out.append(f' <span class="mailer-link-address">[{shown}]</span>')

    def _note_embed(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        address = given.get("src") or given.get("data") or given.get("code") or ""
        where = f": {address}" if address else ""
        note = f"[{tag} not loaded in the preview{where}]"
        self.out.append(f'<span class="mailer-blocked">{html.escape(note)}</span>')

    def _attributes(
        self, tag: str, attrs: list[tuple[str, str | None]]
    ) -> list[tuple[str, str | None]]:
        kept: list[tuple[str, str | None]] = []
        for name, value in attrs:
            if name in PLAIN_ATTRIBUTES or _EXTENSION_ATTRIBUTE.fullmatch(name):
                kept.append((name, value))
            elif name in CSS_ATTRIBUTES and value is not None:
                kept.append((name, clean_css(value)))
            elif tag == "img" and name == "src" and value:
                image = self._image(value.strip())
                if image:
                    kept.append(("src", image))
                else:
                    kept.append(("title", f"Remote image not loaded in the preview: {value}"))
        return kept

    def _image(self, address: str) -> str | None:
        """A ``data:`` image for ``address``, or None if it would be loaded from elsewhere."""
        if address[:11].lower() == "data:image/":
            return address
        if address[:4].lower() == "cid:":
            found = self.inline_images.get(address[4:])
            if found is not None:
                mimetype, content = found
                return f"data:{mimetype};base64,{base64.b64encode(content).decode('ascii')}"
        return None

    # -- Everything else --

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.style is not None:
            self.style.append(data)
            return
        if self.links:
            self.links[-1][1].append(data)
        self.out.append(html.escape(data, quote=False))

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype") and not self.skipping:
            self.out.append("<!DOCTYPE html>")

    # Comments (Outlook's conditional ones too), processing instructions and CDATA
    # sections are left out.
    def handle_comment(self, data: str) -> None:
        pass

    def handle_pi(self, data: str) -> None:
        pass

    def unknown_decl(self, data: str) -> None:
        pass


def _attributes_text(attrs: list[tuple[str, str | None]]) -> str:
    parts = []
    for name, value in attrs:
        parts.append(f" {name}" if value is None else f' {name}="{html.escape(value)}"')
    return "".join(parts)


# -- CSS -----------------------------------------------------------------------------------

# Functions that compute a value and fetch nothing; any other (url, image-set, image,
# src, cross-fade, element, paint, attr, expression...) is removed with its arguments.
SAFE_FUNCTIONS = frozenset(
    [
        "rgb", "rgba", "hsl", "hsla", "hwb", "lab", "lch", "oklab", "oklch", "color", "color-mix",
        "light-dark", "calc", "min", "max", "clamp", "round", "mod", "rem", "abs", "sign", "sin",
        "cos", "tan", "asin", "acos", "atan", "atan2", "pow", "sqrt", "hypot", "log", "exp", "var",
        "env", "linear-gradient", "radial-gradient", "conic-gradient", "repeating-linear-gradient",
        "repeating-radial-gradient", "repeating-conic-gradient", "-webkit-linear-gradient",
        "-webkit-radial-gradient", "-moz-linear-gradient", "-moz-radial-gradient", "translate",
        "translatex", "translatey", "translatez", "translate3d", "rotate", "rotatex", "rotatey",
        "rotatez", "rotate3d", "scale", "scalex", "scaley", "scalez", "scale3d", "skew", "skewx",
        "skewy", "matrix", "matrix3d", "perspective", "cubic-bezier", "steps", "linear", "blur",
        "brightness", "contrast", "drop-shadow", "grayscale", "hue-rotate", "invert", "opacity",
        "saturate", "sepia", "rect", "inset", "circle", "ellipse", "polygon", "minmax", "repeat",
        "fit-content", "counter", "counters", "format", "not", "is", "where", "has", "nth-child",
        "nth-last-child", "nth-of-type", "nth-last-of-type", "lang", "dir", "-webkit-any",
        "-moz-any", "selector",
    ]
)  # fmt: skip
# At-rules kept (their blocks are cleaned like the rest); any other is removed whole
# (@import, @font-face, @namespace...).
SAFE_AT_RULES = frozenset(
    {"media", "supports", "keyframes", "-webkit-keyframes", "-moz-keyframes", "page"}
)
_HEX = frozenset("0123456789abcdefABCDEF")
_CSS_SPACE = " \t\n\r\f"


def clean_css(css: str) -> str:
    """``css`` without anything that could fetch: unknown functions and at-rules removed.

    Also without ``<`` and ``&`` (written as CSS escapes), so that the text
    means the same in an HTML ``<style>``, an SVG one, or an attribute.
    """
    out: list[str] = []
    i, end = 0, len(css)
    while i < end:
        char = css[i]
        if css.startswith("/*", i):
            close = css.find("*/", i + 2)
            i = end if close < 0 else close + 2
            out.append(" ")
        elif char in "\"'":
            j = _string_end(css, i)
            out.append(_escape_markup(css[i:j]))
            i = j
        elif char == "@":
            name, j = _identifier(css, i + 1)
            if name and name.lower() in SAFE_AT_RULES:
                out.append(_escape_markup(css[i:j]))
                i = j
            else:
                i = _at_rule_end(css, i + 1)
                out.append(" ")
        elif _starts_identifier(css, i):
            name, j = _identifier(css, i)
            if j < end and css[j] == "(":
                if name.lower() in SAFE_FUNCTIONS:
                    out.append(_escape_markup(css[i : j + 1]))
                    i = j + 1
                else:
                    i = _block_end(css, j, "(", ")")
                    out.append(" ")
            else:
                out.append(_escape_markup(css[i:j]))
                i = j
        else:
            out.append(_escape_markup(char))
            i += 1
    return "".join(out)


def _escape_markup(text: str) -> str:
    return text.replace("<", "\\3c ").replace("&", "\\26 ")


def _starts_identifier(css: str, i: int) -> bool:
    char = css[i]
    if char.isalnum() or char in "-_" or ord(char) >= 0x80:
        return True
    return char == "\\" and i + 1 < len(css) and css[i + 1] not in "\r\n\f"


def _identifier(css: str, i: int) -> tuple[str, int]:
    """The name an identifier starting at ``i`` stands for (escapes decoded), and its end."""
    name: list[str] = []
    end = len(css)
    while i < end:
        char = css[i]
        if char == "\\":
            if i + 1 >= end or css[i + 1] in "\r\n\f":
                break
            j = i + 1
            while j < end and j < i + 7 and css[j] in _HEX:
                j += 1
            if j > i + 1:
                code = int(css[i + 1 : j], 16)
                name.append(chr(code) if 0 < code <= 0x10FFFF else "\ufffd")
                if j < end and css[j] in _CSS_SPACE:
                    j += 1
                i = j
            else:
                name.append(css[i + 1])
                i += 2
        elif char.isalnum() or char in "-_" or ord(char) >= 0x80:
            name.append(char)
            i += 1
        else:
            break
    return "".join(name), i


def _string_end(css: str, i: int) -> int:
    """Where the string starting at ``i`` ends (after its quote, or at the line's end)."""
    quote, i, end = css[i], i + 1, len(css)
    while i < end:
        char = css[i]
        if char == "\\":
            i += 2
        elif char == quote:
            return i + 1
        elif char in "\r\n\f":
            return i
        else:
            i += 1
    return end


def _block_end(css: str, i: int, opening: str, closing: str) -> int:
    """Where the block opened at ``i`` closes, skipping strings, comments and escapes."""
    depth, end = 0, len(css)
    while i < end:
        char = css[i]
        if char == "\\":
            i += 2
            continue
        if char in "\"'":
            i = _string_end(css, i)
            continue
        if css.startswith("/*", i):
            close = css.find("*/", i + 2)
            i = end if close < 0 else close + 2
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return end


def _at_rule_end(css: str, i: int) -> int:
    """Where an at-rule whose name starts at ``i`` ends: after its ``;`` or its block."""
    end = len(css)
    while i < end:
        char = css[i]
        if char == "\\":
            i += 2
        elif char in "\"'":
            i = _string_end(css, i)
        elif char == "(":
            i = _block_end(css, i, "(", ")")
        elif char == ";":
            return i + 1
        elif char == "{":
            return _block_end(css, i, "{", "}")
        elif char == "}":
            return i  # the end of the block around it
        else:
            i += 1
    return end

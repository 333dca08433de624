"""The HTML preview loads nothing remote (issue 15): hostile HTML, rewritten.

A small reader of our own (``loads``) lists what a browser could load,
connect to or navigate to from a page; it must find nothing in any preview,
and must find the vector in the HTML given (so it sees what it is meant to).
The real browser's side is in ``tests/browser/test_preview_in_a_browser.py``.
"""

from __future__ import annotations

import re
from html import unescape as html_unescape
from html.parser import HTMLParser

import pytest
from django.core.mail import EmailMultiAlternatives
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.admin import preview

from .admin_pages import LIST, queue, text

EVIL = "http://evil.example"
# Attributes through which a browser loads, connects, navigates or refreshes.
URL_ATTRIBUTES = {
    "src", "href", "srcset", "poster", "background", "action", "formaction", "data",
    "xlink:href", "ping", "code", "codebase", "cite", "longdesc", "lowsrc", "dynsrc",
    "manifest", "profile", "usemap", "archive", "classid", "icon", "srcdoc", "content",
    "imagesrcset", "fill", "stroke", "filter", "mask", "clip-path",
}  # fmt: skip
LOADING_ELEMENTS = {
    "iframe", "frame", "frameset", "object", "embed", "applet", "portal", "fencedframe",
    "link", "meta", "base", "script",
}  # fmt: skip
CSS_FETCHES = ("url(", "image-set(", "image(", "src(", "cross-fade(", "element(", "@import")


class _Loads(HTMLParser):
    """What a browser could load or navigate to from a page: a rough browser of our own."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in LOADING_ELEMENTS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip()
            if name == "style":
                self.css(value)
            elif name in URL_ATTRIBUTES and value and not self.harmless(value):
                self.found.append(f"{tag} {name}={value}")
        self.in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False

    @staticmethod
    def harmless(address: str) -> bool:
        return address.lower().startswith("data:image/") or address.startswith("#")

    def handle_data(self, data: str) -> None:
        if self.in_style:
            self.css(data)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)  # "<style/>" opens a style sheet all the same

    def css(self, text: str) -> None:
        # Character references first (an SVG <style> has them), then CSS's comments,
        # strings (a string is not a fetch: url("x") still shows "url(") and escapes.
        tokens = re.sub(
            r"/\*.*?(?:\*/|$)|\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?"
            r"|\\([0-9a-fA-F]{1,6})\s?|\\(.)",
            lambda m: chr(int(m[1], 16)) if m[1] else m[2] or "",
            html_unescape(text),
            flags=re.S,
        )
        squeezed = re.sub(r"\s+", "", tokens).lower()
        self.found.extend(f"css {fetch}" for fetch in CSS_FETCHES if fetch in squeezed)


def loads(page: str) -> list[str]:
    parser = _Loads()
    parser.feed(page)
    parser.close()
    return parser.found


HOSTILE = [
    f'<iframe src="{EVIL}/frame"></iframe>',
    f'<iframe srcdoc="&lt;img src={EVIL}/x&gt;"></iframe>',
    f'<frameset><frame src="{EVIL}/frame"></frameset>',
    f'<img src="{EVIL}/pixel.gif">',
    f'<img src="cid:unknown" srcset="{EVIL}/2x.png 2x">',
    f'<picture><source srcset="{EVIL}/a.webp"><img src="{EVIL}/a.png"></picture>',
    f'<video poster="{EVIL}/p.png" src="{EVIL}/v.mp4"><track src="{EVIL}/t.vtt"></video>',
    f'<audio src="{EVIL}/a.mp3"></audio>',
    f'<a href="{EVIL}/link" ping="{EVIL}/ping">click</a>',
    f"<a href=\" JavaScript:fetch('{EVIL}')\">js</a>",
    f'<form action="{EVIL}/f"><input type="image" src="{EVIL}/i.png">'
    f'<button formaction="{EVIL}/b">go</button></form>',
    f'<table background="{EVIL}/t.png"><tr><td background="{EVIL}/td.png">x</td></tr></table>',
    f'<body background="{EVIL}/body.png">',
    f'<object data="{EVIL}/o.swf"><param name="movie" value="{EVIL}/m.swf"></object>',
    f'<embed src="{EVIL}/e.swf">',
    f'<applet code="x" codebase="{EVIL}/"></applet>',
    f'<link rel="stylesheet" href="{EVIL}/s.css"><link rel="preconnect" href="{EVIL}">',
    f'<meta http-equiv="refresh" content="0; url={EVIL}/refresh">',
    f'<base href="{EVIL}/"><img src="relative.png">',
    f'<script src="{EVIL}/s.js"></script>',
    f'<svg><image href="{EVIL}/i.svg"/><use xlink:href="{EVIL}/u.svg#x"/>'
    f'<rect fill="url({EVIL}/f)" filter="url({EVIL}/x)"/><a href="{EVIL}/svg-link">s</a></svg>',
    f'<math href="{EVIL}/math"><mi>x</mi></math>',
    f"<style>@import url({EVIL}/i.css); @import '{EVIL}/j.css';</style>",
    f"<style>body {{ background: url( '{EVIL}/b.png' ) red }}</style>",
    f'<style>.a {{ background-image: image-set("{EVIL}/c.png" 1x) }}</style>',
    f"<style>@font-face {{ font-family: x; src: url({EVIL}/f.woff) }}</style>",
    f"<style>.a {{ background: u\\72 l({EVIL}/escaped) }}</style>",
    f"<style>.a {{ background: \\75\\72\\6c({EVIL}/escaped) }}</style>",
    f"<style>.a {{ background: URL({EVIL}/upper) }}</style>",
    f"<style>@media screen {{ .a {{ background: url({EVIL}/m) }} }}</style>",
    f"<style>.a {{ cursor: u/**/rl({EVIL}/c) }}</style>",
    f"<svg><style>&#117;&#114;&#108;({EVIL}/entity)</style></svg>",
    f"<style/>.a {{ background: url({EVIL}/self-closed) }}",
    f'<div style="background: url(&quot;{EVIL}/inline&quot;)">d</div>',
    f'<div style="list-style: u\\rl({EVIL}/li)">d</div>',
    f'<div style="background: image({EVIL}/img)">d</div>',
    f'<p title="x" style="behavior: url({EVIL}/htc)">q</p>',
    f'<img/src="{EVIL}/slash">',
    f'<img src="{EVIL}/a.png" src="data:image/gif;base64,R0lG">',
    f'<a href="{EVIL}/unclosed"><style>.a {{ b: url({EVIL}/in-link) }}',
]


@pytest.mark.no_database
@pytest.mark.parametrize("source", HOSTILE)
def test_the_preview_keeps_nothing_that_loads(source: str) -> None:
    assert loads(source), "the check would not see this one"
    rendered = preview.render(source, {})
    assert loads(rendered) == [], rendered
    assert loads(preview.render(f"<html><body>{source}</body></html>", {})) == []


NOISE = [
    "<", ">", "/", "\\", '"', "'", "=", "(", ")", "{", "}", ";", ":", " ", "\n", "&", "#",
    "<style>", "</style>", "<style/>", "<a href=", "</a>", "<img src=", "<iframe src=",
    "</iframe>", "<svg>", "<script>", " style=", "url(", "u\\72 l(", "&#117;rl(", "@import ",
    "@media x{", "/*", "*/", EVIL, "cid:logo", "data:image/gif;base64,R0lG", "<!--", "-->",
    "<![CDATA[", "]]>", "<!doctype html>", "<?pi?>", "<textarea>", "<title>", "<noscript>",
]  # fmt: skip


@pytest.mark.no_database
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(NOISE + HOSTILE), max_size=40).map("".join))
def test_no_mix_of_markup_makes_the_preview_load_anything(source: str) -> None:
    rendered = preview.render(source, {"logo": ("image/gif", b"GIF89a")})
    assert loads(rendered) == [], rendered


@pytest.mark.no_database
def test_the_preview_shows_what_it_did_not_load() -> None:
    rendered = preview.render(
        f'<p>Hello &lt;you&gt;</p><a href="{EVIL}/offer">See the offer</a> '
        f'<a href="{EVIL}/same">{EVIL}/same</a> <a href="#top">Top</a>'
        f'<img src="{EVIL}/logo.png" alt="Our logo"><img src="cid:logo" alt="inline">'
        f'<iframe src="{EVIL}/frame">fallback</iframe><b>after</b>',
        {"logo": ("image/gif", b"GIF89a")},
    )
    assert "<p>Hello &lt;you&gt;</p>" in rendered
    assert re.search(
        rf'<a title="Link to {EVIL}/offer \(not followed in the preview\)">See the offer</a> '
        rf'<span class="mailer-link-address">\[{EVIL}/offer\]</span>',
        rendered,
    )
    assert rendered.count(f"{EVIL}/same") == 2  # in the title and the text: not repeated
    assert '<a href="#top">Top</a>' in rendered
    assert f'title="Remote image not loaded in the preview: {EVIL}/logo.png" alt="Our logo"' in (
        rendered
    )
    assert '<img src="data:image/gif;base64,R0lGODlh" alt="inline">' in rendered
    assert f"[iframe not loaded in the preview: {EVIL}/frame]</span><b>after</b>" in rendered
    assert "fallback" not in rendered


@pytest.mark.no_database
def test_the_preview_keeps_harmless_css() -> None:
    css = (
        "body { color: rgb(1, 2, 3); font: 12px/1.5 'Helvetica Neue', sans-serif }"
        " @media (max-width: 600px) { .col:not(.keep) { width: calc(100% - 2px) !important } }"
        " .hero { background: linear-gradient(#fff, #000) }"
    )
    rendered = preview.render(f'<style>{css}</style><p style="margin: 0 auto">x</p>', {})
    assert rendered == f'<style>{css}</style><p style="margin: 0 auto">x</p>'
    cut = preview.clean_css(f".a {{ background: #fff url({EVIL}/b.png) no-repeat; color: red }}")
    assert cut == ".a { background: #fff   no-repeat; color: red }"


@pytest.mark.django_db
def test_the_preview_page_serves_the_rewritten_html(reader: Client) -> None:
    email = EmailMultiAlternatives("Offer", "text", "shop@example.com", ["bob@example.com"])
    email.attach_alternative("".join(HOSTILE), "text/html")
    message = queue(email)
    response = reader.get(f"{LIST}{message.pk}/preview/")
    assert response.status_code == 200
    assert loads(text(response)) == []
    assert "default-src 'none'" in response["Content-Security-Policy"]

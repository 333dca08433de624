"""The admin against someone who may look at the lists but not at bodies (issue 15).

URL lookups are refused beyond the lists' own filters, search never looks
past the top-level subject and addresses, a malformed row never makes a page
fail, and the HTML preview loads nothing remote.
"""

from __future__ import annotations

import re
import string
from html import unescape as html_unescape
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer import preview
from mailer.models import RESULT_FAILURE, DontSendEntry, Message, MessageLog, Worker

from .admin_pages import LIST, LOG_LIST, queue, rows, text
from .samples import plain

pytestmark = pytest.mark.django_db

SECRET = "reset/4f2a-secret"
DONT_SEND_LIST = "/admin/mailer/dontsendentry/"
WORKER_LIST = "/admin/mailer/worker/"

# Every parameter each list accepts: those its filters, date hierarchy and links make.
ACCEPTED = {
    LIST: {
        "state",
        "mailer",
        "priority__exact",
        "priority__isnull",
        "when_added__year",
        "when_added__month",
        "when_added__day",
    },
    LOG_LIST: {
        "result__exact",
        "result__isnull",
        "priority__exact",
        "priority__isnull",
        "mailer",
        "queue_id",
        "when_attempted__year",
        "when_attempted__month",
        "when_attempted__day",
    },
    DONT_SEND_LIST: set(),
    WORKER_LIST: set(),
}
MODELS = {LIST: Message, LOG_LIST: MessageLog, DONT_SEND_LIST: DontSendEntry, WORKER_LIST: Worker}
LOOKUPS = [
    "",
    "__exact",
    "__iexact",
    "__contains",
    "__icontains",
    "__regex",
    "__iregex",
    "__startswith",
    "__istartswith",
    "__endswith",
    "__iendswith",
    "__in",
    "__isnull",
    "__gt",
    "__gte",
    "__lt",
    "__range",
]
# JSON key and index transforms, transforms of transforms, paths through pk.
CHAINED = [
    "recipient_results__foo",
    "recipient_results__foo__contains",
    "recipient_results__ok@example.com__0",
    "recipient_results__has_key",
    "recipient_results__has_keys",
    "recipient_results__contains",
    "recipient_results__contained_by",
    "recipients__0",
    "recipients__0__0__icontains",
    "recipients__contains",
    "message_data__0",
    "message_data__lower__contains",
    "pk__in",
    "pk",
    "id__gt",
    "when_added__year__gt",
    "when_added__date",
    "status__in",
    "last_reply__contains",
    "smtp_reply__regex",
    "nonexistent__field",
]


def secret_message() -> Message:
    """A queued password reset whose body holds ``SECRET``."""
    return queue(
        EmailMessage(
            "Password reset",
            f"Your link: https://shop.example.com/{SECRET}",
            "shop@example.com",
            ["forgetful@example.com"],
        ),
        recipient_results={"forgetful@example.com": ["transient", 451, SECRET]},
    )


def logged(message: Message, reply: str = SECRET) -> MessageLog:
    """A log row of an attempt at ``message``; its recipients' reply is shown to viewers."""
    return MessageLog.objects.create(
        message_data=message.message_data,
        when_added=message.when_added,
        priority=message.priority,
        result=RESULT_FAILURE,
        queue_id=message.pk,
        recipients=[["forgetful@example.com", "transient", 451, reply]],
    )


def parameters(url: str) -> list[str]:
    """Every field of the list's model with every lookup type, and chained paths."""
    fields = [field.name for field in MODELS[url]._meta.get_fields()]
    return [f"{field}{lookup}" for field in fields for lookup in LOOKUPS] + CHAINED


def guesses(parameter: str) -> tuple[str, str]:
    """A right and a wrong guess at what ``parameter`` would match in the secret row."""
    if parameter.endswith("__isnull"):
        return "false", "true"
    if parameter.endswith(("__regex", "__iregex")):
        return "4f2a-s", "4f2b-s"
    return SECRET[:10], "zzzz"


@pytest.mark.parametrize("url", list(ACCEPTED))
def test_a_list_accepts_only_its_own_filters(url: str, viewer: Client) -> None:
    message = secret_message()
    logged(message)
    DontSendEntry.objects.create(to_address="forgetful@example.com")
    Worker.objects.create(name="h:1:2", hostname="h", pid=1)
    for parameter in parameters(url):
        right, wrong = guesses(parameter)
        answers = [viewer.get(url, {parameter: guess}) for guess in (right, wrong)]
        if parameter in ACCEPTED[url]:
            assert all(a.status_code in (200, 302) for a in answers), parameter
        else:
            assert [a.status_code for a in answers] == [400, 400], parameter


def test_the_accepted_parameters_are_those_the_pages_link_to(
    viewer: Client, admin_client: Client
) -> None:
    """The filters, the date hierarchy and the queue entry column still work."""
    message = secret_message()
    log = logged(message)
    assert rows(viewer.get(LIST, {"state": "queued"})) == [str(message.pk)]
    assert rows(viewer.get(LIST, {"when_added__year": str(message.when_added.year)})) == [
        str(message.pk)
    ]
    assert rows(viewer.get(LOG_LIST, {"queue_id": str(message.pk)})) == [str(log.pk)]
    assert rows(viewer.get(LOG_LIST, {"result__exact": RESULT_FAILURE})) == [str(log.pk)]
    page = text(admin_client.get("/admin/mailer/message/dashboard/"))
    assert f'href="{LOG_LIST}?result__exact=3"' in page
    # A value a filter cannot take is Django's "invalid lookup" redirect, as before.
    response = viewer.get(LIST, {"priority__exact": "not-a-number"})
    assert (response.status_code, response["Location"]) == (302, f"{LIST}?e=1")


@pytest.mark.parametrize("url", [LIST, LOG_LIST])
def test_no_user_may_filter_on_stored_data(url: str, admin_client: Client) -> None:
    """Superusers included: the lists are not a way to query bodies."""
    secret_message()
    for parameter in ("message_data__contains", "message_data__regex", "message_data"):
        assert admin_client.get(url, {parameter: SECRET}).status_code == 400, parameter
    json_field = "recipient_results" if url == LIST else "recipients"
    assert admin_client.get(url, {f"{json_field}__icontains": SECRET}).status_code == 400
    # The popup's "to field" cannot point at stored data either.
    assert admin_client.get(url, {"_popup": "1", "_to_field": "message_data"}).status_code == 400


def test_the_attack_from_the_issue_recovers_nothing(viewer: Client) -> None:
    """The script that read a reset link one character at a time, with each lookup."""
    message = secret_message()
    logged(message)
    alphabet = string.ascii_lowercase + string.digits + "-/"
    for url, parameter in [
        (LIST, "message_data__contains"),
        (LIST, "message_data__regex"),
        (LOG_LIST, "message_data__contains"),
        (LOG_LIST, "recipients__icontains"),
    ]:
        known = "reset/"
        for _ in range(len(SECRET) - len(known)):
            found = [
                char
                for char in alphabet
                if str(message.pk) in rows(viewer.get(url, {parameter: known + char}))
            ]
            if not found:
                break
            known += found[0]
        assert known == "reset/", (url, parameter, known)
        statuses = {viewer.get(url, {parameter: guess}).status_code for guess in ("r", "z")}
        assert statuses == {400}


# -- Search ---------------------------------------------------------------------------------


def forwarding(inner_subject: str, inner_recipient: str) -> EmailMultiAlternatives:
    """A message carrying another as a ``message/rfc822`` attachment, and ``attrs``."""
    inner = EmailMessage(inner_subject, "inner body", "in@example.com", [inner_recipient])
    outer = EmailMultiAlternatives(
        "Forwarded for you", f"See {SECRET}", "fwd@example.com", ["boss@example.com"]
    )
    outer.attach_alternative(f'<p data-x="&quot;subject&quot;">{SECRET}</p>', "text/html")
    outer.attach("original.eml", inner, "message/rfc822")
    outer.metadata = {"subject": "metadata-subject", "to": ["meta@example.com"]}  # type: ignore[attr-defined]
    return outer


@pytest.mark.parametrize("url", [LIST, LOG_LIST])
def test_search_finds_nothing_behind_the_body_permission(url: str, viewer: Client) -> None:
    message = queue(forwarding("Quarterly figures 7Q", "cfo@inner.example"))
    queue(plain())
    if url == LOG_LIST:
        logged(message, reply="try again later")
    target = [str(message.pk)] if url == LIST else [str(MessageLog.objects.get().pk)]
    for visible in ("Forwarded for you", "fwd@example", "boss@example.com"):
        assert rows(viewer.get(url, {"q": f'"{visible}"'})) == target, visible
    for right, wrong in [
        (SECRET, "reset/0000-secret"),  # the body
        ("Quarterly figures 7Q", "Quarterly figures 8Q"),  # the attached message's subject
        ("cfo@inner.example", "ceo@inner.example"),  # its recipient
        ("in@example.com", "out@example.com"),  # its sender
        ("metadata-subject", "metadata-object"),  # attrs
        ("meta@example.com", "mesa@example.com"),
        ("inner body", "outer body"),
    ]:
        found = [rows(viewer.get(url, {"q": f'"{guess}"'})) for guess in (right, wrong)]
        assert found == [[], []], right


def test_text_in_a_body_that_imitates_a_key_is_still_body(viewer: Client) -> None:
    disguised = '","to":["victim@example.com"],"subject":"hidden'
    message = queue(EmailMessage("Visible", disguised, "a@example.com", ["b@example.com"]))
    assert rows(viewer.get(LIST, {"q": "Visible"})) == [str(message.pk)]
    for guess in ("victim@example.com", "hidden", '"to"'):
        assert rows(viewer.get(LIST, {"q": f"'{guess}'"})) == [], guess


def test_search_through_a_big_body_with_many_escapes(viewer: Client) -> None:
    """Every database's regex engine walks a long body full of escapes to the addresses."""
    body = 'a "quoted" \\ line\n' * 20_000
    message = queue(EmailMessage("Big", body, "a@example.com", ["far@example.com"]))
    assert len(message.message_data) > 400_000
    assert rows(viewer.get(LIST, {"q": "far@example.com"})) == [str(message.pk)]
    assert rows(viewer.get(LIST, {"q": "quoted"})) == []


def test_search_does_not_read_rows_of_another_layout(viewer: Client) -> None:
    """Another program's row is found by its id, never by its content."""
    message = queue()
    Message.objects.filter(pk=message.pk).update(
        message_data='{"subject":"Other layout","to":["x@example.com"],"v":1}'
    )
    assert rows(viewer.get(LIST, {"q": "Other"})) == []
    assert rows(viewer.get(LIST, {"q": str(message.pk)})) == [str(message.pk)]


def test_a_viewer_is_told_what_search_covers(viewer: Client) -> None:
    page = text(viewer.get(LIST))
    assert "never bodies or attachments" in page


def test_a_caller_that_gives_no_request_is_refused(rf: Any) -> None:
    """Django 5.2 lets ``lookup_allowed`` be called without the request: then nothing passes."""
    model_admin = admin.site._registry[Message]
    assert model_admin.lookup_allowed("state", "queued", rf.get(LIST))
    assert not model_admin.lookup_allowed("state", "queued")


# -- The HTML preview loads nothing ----------------------------------------------------------

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


def test_the_preview_page_serves_the_rewritten_html(reader: Client) -> None:
    email = EmailMultiAlternatives("Offer", "text", "shop@example.com", ["bob@example.com"])
    email.attach_alternative("".join(HOSTILE), "text/html")
    message = queue(email)
    response = reader.get(f"{LIST}{message.pk}/preview/")
    assert response.status_code == 200
    assert loads(text(response)) == []
    assert "default-src 'none'" in response["Content-Security-Policy"]

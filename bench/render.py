"""Messages rendered per second: Django's ``EmailMessage`` against ``mailer.message.render``.

Run it with the Python of either test virtualenv (the package is installed there)::

    .venvs/dj52/bin/python bench/render.py
    .venvs/dj61/bin/python bench/render.py --seconds 2

For three stored messages -- a plain 800-byte one, the same with an HTML
alternative, and one with a 100 KB attachment -- it measures two things on
one core, best of ``--rounds``:

* "from storage": what delivery does per message, from the stored JSON text
  to the bytes to send: ``compat.render(storage.decode(text))`` (Django's
  path) against ``render(json.loads(text))``;
* "render only": an ``EmailMessage`` already built against a document
  already parsed: ``compat.render(message)`` against ``render(doc)``.

Both sides make the same bytes (``tests/test_render.py`` proves it) with a
Message-ID assigned at enqueue and a Date made at render time, as delivery does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings

settings.configure(DEFAULT_CHARSET="utf-8", USE_TZ=True, INSTALLED_APPS=[])
django.setup()

from django.core.mail import EmailMultiAlternatives  # noqa: E402

from mailer import compat  # noqa: E402
from mailer.message import codec as storage  # noqa: E402
from mailer.message.render import render  # noqa: E402

LINE = "Your order has been packed and will leave our warehouse tomorrow morning.\n"


def plain() -> EmailMultiAlternatives:
    """A one-recipient text message with an 800-byte body."""
    body = (LINE * 11)[:800]
    return EmailMultiAlternatives(
        "Your order #10482 has shipped", body, "Shop <shop@example.com>", ["alice@example.org"]
    )


def with_html() -> EmailMultiAlternatives:
    """The plain message with an HTML alternative (about 2 KB, lines longer than 78)."""
    message = plain()
    paragraph = f'<p style="margin:0 0 12px;font-family:Arial,sans-serif">{LINE.strip()}</p>'
    message.attach_alternative(f"<html><body>{paragraph * 12}</body></html>\n", "text/html")
    return message


def with_attachment() -> EmailMultiAlternatives:
    """The plain message with a 100 KB PDF attached."""
    message = plain()
    message.attach("invoice-10482.pdf", os.urandom(100_000), "application/pdf")
    return message


def stored_text(message: EmailMultiAlternatives) -> str:
    """The text the queue stores, with the Message-ID it assigns at enqueue."""
    doc = storage.to_document(message)
    storage.assign_message_id(doc)
    return storage.dumps(doc)


def rate(work: Callable[[], Any], seconds: float, rounds: int) -> float:
    """Calls of ``work`` per second, best of ``rounds`` runs of about ``seconds`` each."""
    work()
    best = 0.0
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            for _ in range(10):
                work()
            calls += 10
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, calls / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    args = parser.parse_args()

    print(
        f"Django {django.get_version()}, Python {platform.python_version()}, "
        f"one core; messages per second, best of {args.rounds} x {args.seconds:g} s"
    )
    print(f"{'':22}{'from storage':>30}{'render only':>30}")
    print(f"{'message':22}" + f"{'Django':>10}{'mailer':>10}{'ratio':>10}" * 2)
    for name, make in (
        ("plain 800 B", plain),
        ("+ HTML alternative", with_html),
        ("+ 100 KB attachment", with_attachment),
    ):
        text = stored_text(make())
        doc = json.loads(text)
        message = storage.from_document(doc)
        assert render(doc) is not None, f"{name}: not rendered"
        works: list[Callable[[], Any]] = [
            lambda text=text: compat.render(storage.decode(text)),
            lambda text=text: render(json.loads(text)),
            lambda message=message: compat.render(message),
            lambda doc=doc: render(doc),
        ]
        row = [rate(work, args.seconds, args.rounds) for work in works]
        cells = ""
        for theirs, ours in (row[:2], row[2:]):
            cells += f"{theirs:>10,.0f}{ours:>10,.0f}{ours / theirs:>9.1f}x"
        print(f"{name:22}{cells}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

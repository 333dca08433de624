"""The benchmark's sample message, the same for every package: a token in its subject.

The token ``tok-<prefix>-<i>`` is what the sink (bench/sink.py) counts to prove that
every message arrived exactly once.
"""

from __future__ import annotations

import random

from django.core.mail import EmailMessage

BODY = (
    "Hello,\n\nThis is a benchmark message. It is about as long as a password reset "
    "or an order confirmation: a greeting, a few sentences, a link and a signature.\n\n"
    "Your order has been received and will be shipped within two working days. You can "
    "follow it at https://shop.example.com/orders/0000000000 at any time.\n\n"
    "If you did not ask for this, you can ignore this message.\n\n"
    "Thanks,\nThe Example team\n"
)
FROM = "Example Shop <shop@example.com>"
ATTACHMENT = bytes(random.Random(42).getrandbits(8) for _ in range(100 * 1024))


def subject(prefix: str, i: int) -> str:
    return f"Your order tok-{prefix}-{i}"


def recipient(i: int) -> str:
    return f"customer{i}@example.com"


def make_email(prefix: str, i: int, attach_kb: int = 0) -> EmailMessage:
    email = EmailMessage(subject(prefix, i), BODY, FROM, [recipient(i)])
    if attach_kb:
        email.attach("invoice.pdf", ATTACHMENT[: attach_kb * 1024], "application/pdf")
    return email

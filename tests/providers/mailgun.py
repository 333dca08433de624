"""Mailgun's messages API as the local server plays it, and a catalogue of its answers.

anymail's Mailgun backend posts form fields (multipart/form-data when there are
attachments) to ``{api_url}{sender_domain}/messages``, with HTTP basic auth
``api:<API key>``. Mailgun accepts the whole message with one id, or refuses the
whole request: an invalid recipient among valid ones is a 400 for all of them.
"""

from __future__ import annotations

import time
import uuid
from email.message import EmailMessage as ParsedMessage

from .server import Reply, Request, Spec, addresses

API_KEY = "mailgun-test-api-key"
WEBHOOK_SIGNING_KEY = "mailgun-test-webhook-signing-key"


class MailgunSpec(Spec):
    name = "mailgun"

    def default(self) -> Reply:
        return queued()

    def recipients(self, request: Request) -> list[str]:
        form = request.form
        return [a for field in ("to", "cc", "bcc") for a in addresses(form.get(field, []))]

    def message(self, request: Request) -> ParsedMessage | None:
        return None  # anymail sends fields, not MIME (Mailgun's messages.mime is unused)

    def text(self, request: Request) -> str:
        form = request.form
        return "\n".join(value for values in form.values() for value in values)


def message_id(domain: str = "example.com") -> str:
    """A Mailgun message id: a timestamp and random part at the sending domain, in <>."""
    return f"<{time.strftime('%Y%m%d%H%M%S')}.{uuid.uuid4().hex[:12]}@{domain}>"


def queued() -> Reply:
    """Accepted: HTTP 200, ``{"id": "<...>", "message": "Queued. Thank you."}``.

    https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages
    (the 200 response of "Send an email").
    """

    def body(request: Request) -> dict[str, str]:
        domain = request.path.strip("/").split("/")[-2]
        return {"id": message_id(domain), "message": "Queued. Thank you."}

    return Reply("mailgun.queued", 200, body)


def bad_request(message: str) -> Reply:
    """HTTP 400 with a human readable ``{"message": ...}``.

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (400).
    """
    return Reply("mailgun.bad_request", 400, {"message": message})


def invalid_address(field: str = "to") -> Reply:
    """HTTP 400 for an address Mailgun cannot use in ``field``: the whole send is refused,
    even when other recipients were valid (the words are Mailgun's, as its clients quote
    them, e.g. https://github.com/mailgun/mailgun-js-boland/issues/199)."""
    return bad_request(f"'{field}' parameter is not a valid address. please check documentation")


def unauthorized() -> Reply:
    """HTTP 401 with the bare text "Forbidden": a wrong API key.

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses
    """
    return Reply("mailgun.unauthorized", 401, "Forbidden")


def forbidden(
    message: str = "Domain example.com is not allowed to send: account disabled",
) -> Reply:
    """HTTP 403: authenticated, but not allowed to send (a disabled domain or account).

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (403).
    """
    return Reply("mailgun.forbidden", 403, {"message": message})


def domain_not_found(domain: str = "example.com") -> Reply:
    """HTTP 404 for a sending domain Mailgun does not know (anymail rewords it).

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (404).
    """
    return Reply("mailgun.domain_not_found", 404, {"message": f"Domain not found: {domain}"})


def rate_limited() -> Reply:
    """HTTP 429: over Mailgun's request rate limit; retry later.

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (429).
    """
    return Reply("mailgun.rate_limited", 429, {"message": "Too many requests"})


def server_error() -> Reply:
    """HTTP 500: an error on Mailgun's side; retry with back-off.

    https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses (500).
    """
    return Reply("mailgun.server_error", 500, {"message": "Internal Server Error"})

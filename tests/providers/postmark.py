"""Postmark's email API as the local server plays it, and a catalogue of its answers.

anymail's Postmark backend posts JSON to ``{api_url}email`` (one message, every
recipient in To/Cc/Bcc) or, for a message with ``merge_data``/``merge_metadata``,
to ``{api_url}email/batch`` (a list: one message per To recipient). Postmark answers
a single send with one result object and a batch with a list of them; an error that
refuses the request comes as HTTP 422 with ``{"ErrorCode": n, "Message": "..."}``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .server import Reply, Request, Spec, addresses

SERVER_TOKEN = "postmark-test-server-token"
# The words Postmark uses after a list of inactive addresses (anymail's Postmark backend
# finds the addresses between "inactive addresses:" and "Inactive recipients").
_INACTIVE_TAIL = (
    "Inactive recipients are ones that have generated a hard bounce, "
    "a spam complaint, or a manual suppression."
)


class PostmarkSpec(Spec):
    name = "postmark"

    def default(self) -> Reply:
        return ok()

    def recipients(self, request: Request) -> list[str]:
        messages = request.json if isinstance(request.json, list) else [request.json]
        found: list[str] = []
        for message in messages:
            for field in ("To", "Cc", "Bcc"):
                found += addresses(message.get(field))
        return found


def _accepted(message: dict[str, Any], text: str = "OK") -> dict[str, Any]:
    # One result as https://postmarkapp.com/developer/api/email-api shows it for
    # "Send a single email": To echoed, when Postmark took it, its id, ErrorCode 0.
    result: dict[str, Any] = {
        "SubmittedAt": datetime.now(UTC).isoformat(),
        "MessageID": str(uuid.uuid4()),
        "ErrorCode": 0,
        "Message": text,
    }
    if message.get("To"):
        result["To"] = message["To"]
    return result


def _inactive_text(found: list[str]) -> str:
    return (
        "You tried to send to recipient(s) that have been marked as inactive. "
        f"Found inactive addresses: {', '.join(found)}. {_INACTIVE_TAIL}"
    )


def ok() -> Reply:
    """Accepted: HTTP 200 with a MessageID; a batch gets one result per message.

    https://postmarkapp.com/developer/api/email-api (single and batch responses).
    """

    def body(request: Request) -> Any:
        data = request.json
        if isinstance(data, list):
            return [_accepted(message) for message in data]
        return _accepted(data)

    return Reply("postmark.ok", 200, body)


def delayed() -> Reply:
    """Accepted, but Postmark says delivery may be delayed (and leaves out ErrorCode).

    Postmark's answer quoted in https://github.com/anymail/django-anymail/issues/392,
    which anymail 12+ reads as status "queued" rather than "sent".
    """

    def body(request: Request) -> Any:
        result = _accepted(request.json, "Message accepted, but delivery may be delayed.")
        del result["ErrorCode"]
        return result

    return Reply("postmark.delayed", 200, body)


def inactive_among(*inactive: str) -> Reply:
    """Accepted for the active recipients; the listed ones are inactive and left out.

    HTTP 200, ErrorCode 0, and a Message naming the inactive addresses: the answer shown
    in https://github.com/ActiveCampaign/postmark.js/issues/87 (Postmark's own client).
    """

    def body(request: Request) -> Any:
        listed = ", ".join(inactive)
        text = f"Message OK, but will not deliver to these inactive addresses: {listed}. "
        text += _INACTIVE_TAIL
        return _accepted(request.json, text)

    return Reply("postmark.inactive_among", 200, body)


def error(code: int, message: str, status: int = 422) -> Reply:
    """A refused request: ``{"ErrorCode": code, "Message": message}``, HTTP 422 by default.

    https://postmarkapp.com/developer/api/overview (HTTP response codes, API error codes).
    """
    return Reply(f"postmark.error({code})", status, {"ErrorCode": code, "Message": message})


def invalid_request(message: str) -> Reply:
    """ErrorCode 300, "Invalid email request": a field Postmark cannot accept.

    https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean
    """
    return error(300, message)


def invalid_from(address: str = "sender@example.com") -> Reply:
    """ErrorCode 300 for a From address that is not a confirmed sender signature.

    https://postmarkapp.com/support/article/troubleshooting-422-unprocessable-entity-errors
    """
    return invalid_request(
        f"Invalid 'From' address: '{address}' is not a verified sender signature."
    )


def invalid_to(address: str) -> Reply:
    """ErrorCode 300 for a recipient Postmark cannot parse (anymail: status "invalid").

    https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean
    """
    return invalid_request(f"Invalid 'To' address: '{address}'.")


def inactive_recipient(*inactive: str) -> Reply:
    """ErrorCode 406: every recipient is inactive (hard bounce, complaint, suppression).

    https://postmarkapp.com/developer/api/overview (error code 406, "Inactive recipient").
    """
    return error(406, _inactive_text(list(inactive)))


def batch_inactive(*inactive: str) -> Reply:
    """A batch answer: ErrorCode 406 for the messages to ``inactive`` addresses, OK for the rest.

    https://postmarkapp.com/developer/api/email-api ("Send batch emails": HTTP 200 and a
    result per message, each with its own ErrorCode).
    """
    refused = {address.lower() for address in inactive}

    def body(request: Request) -> Any:
        results: list[dict[str, Any]] = []
        for message in request.json:
            to = [address.lower() for address in addresses(message.get("To"))]
            if refused.intersection(to):
                results.append({"ErrorCode": 406, "Message": _inactive_text(to)})
            else:
                results.append(_accepted(message))
        return results

    return Reply("postmark.batch_inactive", 200, body)


def unauthorized() -> Reply:
    """HTTP 401, ErrorCode 10: a missing or wrong server token.

    https://postmarkapp.com/developer/api/overview (401; error code 10).
    """
    return error(
        10,
        "The Server Token you provided in the X-Postmark-Server-Token request header "
        "was invalid. Please verify that you are using a valid token.",
        status=401,
    )


def rate_limited() -> Reply:
    """HTTP 429: too many requests for the account.

    https://postmarkapp.com/developer/api/overview (429, "Rate limit exceeded").
    """
    return error(429, "Rate limit exceeded.", status=429)


def server_error() -> Reply:
    """HTTP 500: Postmark failed while handling the request.

    https://postmarkapp.com/developer/api/overview (500, "Internal Server Error").
    """
    return Reply("postmark.server_error", 500, "Internal Server Error")


def maintenance() -> Reply:
    """HTTP 503 during planned maintenance (API error code 100, "Maintenance").

    https://postmarkapp.com/developer/api/overview (503 and error code 100).
    """
    return error(100, "The Postmark API is down for maintenance.", status=503)


def sender_signature_not_found(address: str = "sender@example.com") -> Reply:
    """ErrorCode 400: the From address has no sender signature on the server.

    https://postmarkapp.com/developer/api/overview (API error codes: 400, "Sender signature
    not found").
    """
    return error(
        400,
        f"The 'From' address you supplied ({address}) is not a Sender Signature on your "
        "account. Please add and confirm this address in order to be able to use it in the "
        "'From' field of your messages.",
    )


def forbidden_attachment(filename: str = "run.exe") -> Reply:
    """ErrorCode 411: an attachment of a type Postmark refuses.

    https://postmarkapp.com/developer/api/overview (API error codes: 411, "Forbidden
    attachment type").
    """
    return error(411, f"Forbidden attachment type: {filename}")


def out_of_credits() -> Reply:
    """ErrorCode 405: the account may not send (it ran out of credits).

    https://postmarkapp.com/developer/api/overview (API error codes: 405, "Not allowed to
    send").
    """
    return error(405, "Not allowed to send: You have run out of credits.")


def account_pending() -> Reply:
    """ErrorCode 412: the account is pending approval and may send only to its own domain.

    https://postmarkapp.com/developer/api/overview (API error codes: 412, "Account is
    pending").
    """
    return error(
        412,
        "While your account is pending approval, all recipients must share the same domain "
        "as the 'From' address.",
    )

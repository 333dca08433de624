"""Amazon SES (API v2) as the local server plays it, and a catalogue of its answers.

anymail's ``amazon_ses`` backend calls boto3's ``sesv2`` client ``send_email``: a
SigV4-signed ``POST /v2/email/outbound-emails`` with JSON ``{"Content": {"Raw":
{"Data": <base64 MIME>}}, "Destination": {...}}``. boto3 goes to the local server
when ``endpoint_url`` is given in ``AMAZON_SES_CLIENT_PARAMS`` (with dummy
credentials and a region in ``AMAZON_SES_SESSION_PARAMS``, nothing leaves the
machine). SES v2 is a REST-JSON API: success is ``{"MessageId": ...}``; an error has
its type in the ``x-amzn-ErrorType`` header and ``{"message": ...}`` in the body,
which botocore turns into a ``ClientError`` with that code. SES accepts or refuses
the whole request: there is no per-recipient answer.
"""

from __future__ import annotations

import base64
import email
import email.policy
import uuid
from email.message import EmailMessage as ParsedMessage

from .server import Reply, Request, Spec

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's own documentation example key
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# The part after ":" is the service's internal namespace, which botocore drops.
_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.sesv2/"


class SESSpec(Spec):
    name = "ses"

    def default(self) -> Reply:
        return ok()

    def recipients(self, request: Request) -> list[str]:
        destination = request.json.get("Destination", {})
        return [
            address
            for field in ("ToAddresses", "CcAddresses", "BccAddresses")
            for address in destination.get(field, [])
        ]

    def message(self, request: Request) -> ParsedMessage | None:
        raw = request.json.get("Content", {}).get("Raw")
        if raw is None:
            return None
        return email.message_from_bytes(  # type: ignore[return-value]
            base64.b64decode(raw["Data"]), policy=email.policy.default
        )

    def text(self, request: Request) -> str:
        message = self.message(request)
        return message.as_string() if message is not None else request.body.decode()


def message_id() -> str:
    """An SES message id: hex, a UUID, and a numeric suffix."""
    return f"0100{uuid.uuid4().hex[:12]}-{uuid.uuid4()}-000000"


def _request_id() -> tuple[str, str]:
    return ("x-amzn-RequestId", str(uuid.uuid4()))


def ok() -> Reply:
    """Accepted: HTTP 200, ``{"MessageId": ...}`` (the id SES events carry as mail.messageId).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (response).
    """
    return Reply("ses.ok", 200, lambda request: {"MessageId": message_id()}, (_request_id(),))


def error(code: str, message: str, status: int = 400) -> Reply:
    """An SES v2 error: its type in ``x-amzn-ErrorType``, ``{"message": ...}`` as body.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html and the
    Errors section of https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
    """
    headers = (("x-amzn-ErrorType", f"{code}:{_NAMESPACE}"), _request_id())
    return Reply(f"ses.{code}", status, {"message": message}, headers)


def throttled() -> Reply:
    """HTTP 429 TooManyRequestsException: over the account's maximum sending rate.

    https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html and
    API_SendEmail's errors (TooManyRequestsException, 429).
    """
    return error("TooManyRequestsException", "Maximum sending rate exceeded.", 429)


def daily_quota_exceeded() -> Reply:
    """HTTP 429 TooManyRequestsException: the 24-hour sending quota is used up.

    https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html
    """
    return error("TooManyRequestsException", "Daily message quota exceeded.", 429)


def message_rejected(message: str = "Email address is not verified.") -> Reply:
    """HTTP 400 MessageRejected: SES will not send this message (e.g. an unverified
    identity in the sandbox, or content it refuses).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (errors).
    """
    return error("MessageRejected", message)


def not_verified(*identities: str) -> Reply:
    """MessageRejected for sandbox identities (sender or recipients) not verified."""
    listed = ", ".join(identities)
    return message_rejected(
        "Email address is not verified. The following identities failed the check "
        f"in region {REGION.upper()}: {listed}"
    )


def bad_request(message: str = "Illegal address") -> Reply:
    """HTTP 400 BadRequestException: the input is invalid, e.g. one recipient address
    SES cannot parse (the whole request is refused, valid recipients too).

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (errors).
    """
    return error("BadRequestException", message)


def account_suspended() -> Reply:
    """HTTP 400 AccountSuspendedException: sending is permanently stopped for the account.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (errors).
    """
    return error(
        "AccountSuspendedException",
        "The message can't be sent because the account's ability to send email has "
        "been permanently restricted.",
    )


def sending_paused() -> Reply:
    """HTTP 400 SendingPausedException: sending is paused for the account or configuration set.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (errors).
    """
    return error(
        "SendingPausedException",
        "The message can't be sent because the account's ability to send email is "
        "currently paused.",
    )


def invalid_credentials() -> Reply:
    """HTTP 403 UnrecognizedClientException: the access key is not known to AWS.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html
    """
    return error(
        "UnrecognizedClientException", "The security token included in the request is invalid.", 403
    )


def internal_failure() -> Reply:
    """HTTP 500 InternalFailure: an unknown error on AWS's side.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html
    """
    return error(
        "InternalFailure",
        "The request processing has failed because of an unknown error, exception or failure.",
        500,
    )


def service_unavailable() -> Reply:
    """HTTP 503 ServiceUnavailable: a temporary failure of the service.

    https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html
    """
    return error(
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
        503,
    )

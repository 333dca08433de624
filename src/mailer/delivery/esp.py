"""What an email service provider said, read from django-anymail's answers and exceptions.

A provider's reply is kept as an SMTP reply is: the HTTP status where the SMTP
code goes, the provider's own error text (and error code) where the SMTP text
goes, per recipient; and the message id the provider gave each recipient.

* An HTTP error answer: 408, 425, 429 and 5xx are transient, any other 4xx
  permanent (401 and 403, Amazon SES's account and credential errors and Postmark's
  ErrorCode 405 mean the backend's account or credentials are wrong: the run stops,
  see :func:`misconfigured`).
* A per-recipient answer (``message.anymail_status.recipients``, also when anymail
  raises ``AnymailRecipientsRefused``): "rejected", "invalid" and "failed" are
  permanent refusals of that recipient, "sent" and "queued" accepted; "unknown" is
  accepted unless the provider answered the request with an error status (Postmark's
  422 for one invalid address among several sends nothing at all), then transient.
* ``AnymailInvalidAddress``, ``AnymailUnsupportedFeature``,
  ``AnymailSerializationError``: permanent, the message cannot be sent as it is.
* No answer (connection refused or dropped, a timeout: the ``requests`` or botocore
  exception is the cause): transient.
* anymail's configuration errors (``AnymailConfigurationError``, an
  ``ImproperlyConfigured``): not the message's fault; the run stops.

anymail is optional, so its exceptions are recognised by their class names and
attributes rather than imported.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict

# How much of a provider's error text is kept (its bodies can be long JSON documents).
TEXT_LIMIT = 500

TRANSIENT_STATUSES = frozenset({408, 425, 429})
# HTTP statuses that mean the account or its credentials, not the message, are wrong.
ACCOUNT_STATUSES = frozenset({401, 403})
# Error codes about the account, its credentials or its permissions: Amazon SES's, and
# Postmark's 405 (not allowed to send: out of credits).
ACCOUNT_ERROR_CODES = frozenset(
    {
        "405",
        "AccessDeniedException",
        "AccountSuspendedException",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "SendingPausedException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
ACCEPTED = frozenset({"sent", "queued"})
REFUSED = frozenset({"rejected", "invalid", "failed"})
# Exceptions that say the message itself cannot be sent as it is.
_UNSENDABLE = ("AnymailInvalidAddress", "AnymailUnsupportedFeature", "AnymailSerializationError")
# Causes that mean no answer came: the provider may or may not have the message.
_NO_ANSWER = frozenset(
    {
        "ConnectionError",
        "Timeout",
        "HTTPClientError",  # botocore: ReadTimeoutError, ConnectionClosedError...
        "EndpointConnectionError",
        "ConnectTimeoutError",
    }
)


def verdict_for_http(status: int) -> Verdict:
    """What an HTTP status means for the message: 2xx sent; 408, 425, 429, 5xx transient."""
    if 200 <= status < 300:
        return Verdict.SENT
    if status in TRANSIENT_STATUSES or status >= 500:
        return Verdict.TRANSIENT
    if 400 <= status < 500:
        return Verdict.PERMANENT
    return Verdict.TRANSIENT


def _names(value: object) -> set[str]:
    return {cls.__name__ for cls in type(value).__mro__}


def is_anymail_error(exc: BaseException) -> bool:
    """Did django-anymail raise ``exc`` (an ``AnymailError`` or its configuration error)?"""
    return bool(_names(exc) & {"AnymailError", "AnymailConfigurationError"})


def misconfigured(exc: BaseException) -> bool:
    """Is ``exc`` a fault of the delivery backend's configuration, not of the message?

    anymail's configuration errors, and an API's refusal of the account or its
    credentials (HTTP 401 or 403, SES's credential and account errors): every
    message would get the same answer, so the run stops rather than fail them all.
    """
    if "AnymailConfigurationError" in _names(exc):
        return True
    if "AnymailError" not in _names(exc):
        return False
    status, code, _ = provider_error(exc)
    return status in ACCOUNT_STATUSES or code in ACCOUNT_ERROR_CODES


def provider_error(exc: BaseException) -> tuple[int | None, str, str]:
    """(HTTP status, the provider's error code, the provider's error text) of an anymail
    error; the text trimmed to ``TEXT_LIMIT``, empty when the provider said nothing."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # Amazon SES: botocore's parsed error
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        return (
            status if isinstance(status, int) else None,
            str(error.get("Code") or ""),
            trim(str(error.get("Message") or "")),
        )
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(response, "status_code", None)
    if response is None:
        return (status if isinstance(status, int) else None), "", ""
    code, text = _body_error(response)
    return (status if isinstance(status, int) else None), code, trim(text)


def _body_error(response: Any) -> tuple[str, str]:
    """The error code and text in an HTTP error body: JSON the way providers write it
    (Postmark ``ErrorCode``/``Message``, Mailgun ``message``...), else the body's text."""
    try:
        body = response.json()
    except Exception:  # not JSON
        body = None
    if isinstance(body, dict):
        code = next((body[k] for k in ("ErrorCode", "code", "error_code") if k in body), "")
        for key in ("Message", "message", "error", "detail", "title", "errors"):
            if body.get(key):
                return str(code), _flat(body[key])
        return str(code), _flat(body)
    try:
        return "", str(response.text or "").strip()
    except Exception:
        return "", ""


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_flat(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    return str(value)


def trim(text: str) -> str:
    """``text`` on one line, at most ``TEXT_LIMIT`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def _provider_name(exc: BaseException) -> str:
    """The provider's name as anymail gives it ("Postmark", "Amazon SES")."""
    backend = getattr(getattr(exc, "payload", None), "backend", None)
    return str(
        getattr(exc, "esp_name", None) or getattr(backend, "esp_name", None) or "the provider"
    )


def _error_text(exc: BaseException, code: str, text: str) -> str:
    """The provider's words, with its error code: "Invalid 'To' address (Postmark error 300)"."""
    if not text:
        return trim(str(exc.args[0]) if exc.args else type(exc).__name__)
    return f"{text} ({_provider_name(exc)} error {code})" if code else text


def _no_answer(exc: BaseException) -> BaseException | None:
    """The network failure behind ``exc`` (a timeout, a refused or dropped connection)."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if _names(cause) & _NO_ANSWER or isinstance(cause, OSError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def classify_anymail(exc: BaseException, recipients: list[str]) -> Outcome | None:
    """The outcome of an attempt for which anymail raised ``exc``; None if anymail did not."""
    if not is_anymail_error(exc):
        return None
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if "AnymailConfigurationError" in _names(exc):
        reply = Reply(None, f"the delivery backend is misconfigured: {trim(str(exc))}")
        return _everyone(Verdict.TRANSIENT, reply, name, recipients)
    message = getattr(exc, "email_message", None)
    status = getattr(message, "anymail_status", None)
    if "AnymailRecipientsRefused" in _names(exc):
        if getattr(status, "recipients", None):
            outcome = recipient_outcome(message, recipients or _recipients_of(message), exc)
            outcome.exception = name
            return outcome
        reply = Reply(provider_error(exc)[0], _answer(None, exc)[1])
        outcome = _everyone(Verdict.PERMANENT, reply, name, recipients)
        for result in outcome.recipients:
            result.refused = True
        return outcome
    if _names(exc) & set(_UNSENDABLE):
        return _everyone(Verdict.PERMANENT, Reply(None, trim(str(exc))), name, recipients)
    http_status, code, text = provider_error(exc)
    if http_status is None and not text:
        cause = _no_answer(exc)
        if cause is not None:
            what = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
            reply = Reply(None, trim(f"no answer from {_provider_name(exc)}: {what}"))
            return _everyone(Verdict.TRANSIENT, reply, name, recipients)
        # An error anymail could not attribute (an unreadable answer...): try again.
        return _everyone(Verdict.TRANSIENT, Reply(None, trim(str(exc))), name, recipients)
    verdict = verdict_for_http(http_status) if http_status is not None else Verdict.PERMANENT
    if verdict is Verdict.SENT:  # an exception is never a delivery
        verdict = Verdict.TRANSIENT
    if misconfigured(exc):
        verdict = Verdict.TRANSIENT
    return _everyone(verdict, Reply(http_status, _error_text(exc, code, text)), name, recipients)


def _recipients_of(message: Any) -> list[str]:
    try:
        return [str(address) for address in message.recipients()]
    except Exception:
        return []


def _everyone(verdict: Verdict, reply: Reply, name: str, recipients: list[str]) -> Outcome:
    return Outcome(
        verdict, reply, name, [RecipientResult(address, verdict, reply) for address in recipients]
    )


def _key(address: str) -> str:
    return (parseaddr(address)[1] or address).strip().lower()


def recipient_outcome(
    message: Any, recipients: list[str], exc: BaseException | None = None
) -> Outcome:
    """The outcome of a send anymail answered per recipient (``message.anymail_status``).

    ``exc``: the ``AnymailRecipientsRefused`` raised when every recipient was refused.
    Recipients anymail says nothing about are taken as accepted, as ``send_messages``
    returned without error.
    """
    status = getattr(message, "anymail_status", None)
    statuses = getattr(status, "recipients", None) or {}
    per_recipient = {_key(str(address)): info for address, info in statuses.items()}
    http_status, text = _answer(getattr(status, "esp_response", None), exc)
    refused_request = http_status is not None and http_status >= 400
    results: list[RecipientResult] = []
    for address in recipients:
        info = per_recipient.get(_key(address))
        state = str(getattr(info, "status", None) or "sent")
        provider_id = getattr(info, "message_id", None)
        provider_id = str(provider_id) if provider_id else None
        if state in REFUSED:
            reply = Reply(http_status, f"{state}: {text}" if text else state)
            results.append(RecipientResult(address, Verdict.PERMANENT, reply, refused=True))
        elif state == "unknown" and refused_request:
            reply = Reply(
                http_status,
                trim(f"not sent: the provider refused the request ({text or 'no reason given'})"),
            )
            results.append(RecipientResult(address, Verdict.TRANSIENT, reply))
        else:
            reply = Reply(http_status, f"{state} {provider_id}" if provider_id else state)
            results.append(RecipientResult(address, Verdict.SENT, reply, provider_id=provider_id))
    return combine(results, _accepted_reply(status, http_status))


def _answer(response: Any, exc: BaseException | None) -> tuple[int | None, str]:
    """The HTTP status and the provider's words (with its error code) of its answer."""
    if exc is not None:
        http_status, code, text = provider_error(exc)
        if http_status is None and response is not None:
            http_status = getattr(response, "status_code", None)
        return http_status, _error_text(exc, code, text)
    if response is None:
        return None, ""
    if isinstance(response, dict):  # boto3's answer: no words for a success
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return (status if isinstance(status, int) else None), ""
    status = getattr(response, "status_code", None)
    code, text = _body_error(response)
    if code and code != "0":
        text = f"{text} (error {code})"
    # A success's own words matter when someone was left out: Postmark names the
    # inactive addresses in its "Message".
    return (status if isinstance(status, int) else None), trim(text)


def _accepted_reply(status: Any, http_status: int | None) -> Reply:
    ids = getattr(status, "message_id", None)
    if isinstance(ids, set | frozenset | list | tuple):
        ids = ", ".join(sorted(str(i) for i in ids if i))
    return Reply(http_status, f"accepted {ids}" if ids else "accepted")


def combine(results: list[RecipientResult], accepted: Reply) -> Outcome:
    """One outcome from per-recipient results, as for SMTP's per-recipient replies: sent
    when anyone was reached (transient when someone must be tried again), else the
    worst refusal."""
    if any(r.verdict is Verdict.SENT for r in results):
        transient = [r for r in results if r.verdict is Verdict.TRANSIENT]
        if transient:
            return Outcome(Verdict.TRANSIENT, transient[0].reply, "", results)
        return Outcome(Verdict.SENT, accepted, "", results)
    if not results:
        return Outcome(Verdict.SENT, accepted, "", results)
    verdict = (
        Verdict.TRANSIENT
        if any(r.verdict is Verdict.TRANSIENT for r in results)
        else Verdict.PERMANENT
    )
    return Outcome(verdict, results[0].reply, "", results)


__all__ = [
    "classify_anymail",
    "misconfigured",
    "provider_error",
    "recipient_outcome",
    "verdict_for_http",
]

"""Secrets taken out of reply and exception texts before they are stored or logged.

A delivery backend's error often quotes the request that failed: an HTTP API's
URL with ``?api_key=...``, an ``Authorization`` header, a signed AWS request.
Those texts end up in ``Message.last_reply``, the log rows and the log files,
which people without the credentials read. :func:`scrub` replaces with
``***``:

* the user information of a URL (``https://user:pass@host`` becomes
  ``https://***@host``);
* URL query and fragment values, except values that are plain words or
  numbers under a name that is not sensitive (Gmail's ``?p=BlockedMessage``,
  Microsoft's ``?LinkId=526653``);
* ``Authorization``/``Proxy-Authorization`` values and ``Bearer`` tokens;
* the value of any ``name=value``, ``name: value`` or ``"name": "value"``
  whose name says it is secret: ``api_key``, ``apikey``, ``key``, ``token``,
  ``password``, ``secret``, ``signature``, ``credential``... ;
* AWS access key ids (``AKIA...``).

Ordinary SMTP replies ("250 2.0.0 Ok: queued as 4Bx", "550 5.1.1 <a@b>: User
unknown") hold none of these and pass unchanged.

:func:`storable` makes text that came from a malformed row fit to be written
back: no database keeps a lone surrogate, and PostgreSQL no NUL.
"""

from __future__ import annotations

import logging
import re

__all__ = ["MASK", "ScrubbingFilter", "scrub", "scrubbed_logger", "storable", "unstorable"]

MASK = "***"

# A parameter name that says its value is a secret (lowercase, "-" read as "_").
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|apikey|key|keys|token|access_?token|auth|password|passwd|pwd|pass"
    r"|secret|signature|sig|credentials?|session|pin|otp)(?:$|_)"
    r"|password|secret|token|apikey|api_key|private_key|access_key"
)
_PLAIN_VALUE = re.compile(r"[A-Za-z]+(?:[-_.][A-Za-z]+)*|\d{1,12}")

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")
_URL_PARAMETER = re.compile(r"([?#&;])([^=&;#]*)=([^&;#]*)")

_AUTHORIZATION = re.compile(
    r"\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z0-9-]+\s+(?=\S))?[^\s,;\"']+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_NAMED_VALUE = re.compile(
    r"(?P<name>[\"']?\b[A-Za-z][A-Za-z0-9_.-]*[\"']?)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&,;#\"'()<>\[\]{}]+)"
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
# Nothing to scrub without one of these (lowercased): most replies are returned at once.
_HINTS = (
    "://",
    "key",
    "token",
    "pass",
    "pwd",
    "secret",
    "sig",
    "credential",
    "auth",
    "session",
    "bearer",
    "akia",
    "asia",
    "pin",
    "otp",
)
_HINT = re.compile("|".join(re.escape(hint) for hint in _HINTS))  # one search, not fifteen


def scrub(text: str) -> str:
    """``text`` with URL credentials, query values and named secrets replaced by ``***``."""
    lowered = text.lower()
    if not _HINT.search(lowered):
        return text
    text = _URL.sub(_scrub_url, text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _NAMED_VALUE.sub(_scrub_named_value, text)
    return _AWS_KEY_ID.sub(MASK, text)


def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.strip("\"' ").lower().replace("-", "_")))


def _scrub_url(match: re.Match[str]) -> str:
    url = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", match.group(0))

    def parameter(found: re.Match[str]) -> str:
        mark, name, value = found.groups()
        if not value or value == MASK:
            return found.group(0)
        if not _secret_name(name) and _PLAIN_VALUE.fullmatch(value):
            return found.group(0)
        return f"{mark}{name}={MASK}"

    return _URL_PARAMETER.sub(parameter, url)


def _scrub_named_value(match: re.Match[str]) -> str:
    name, separator, value = match.group("name", "sep", "value")
    if not _secret_name(name) or value.strip("\"'") in ("", MASK):
        return match.group(0)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{name}{separator}{quote}{MASK}{quote}"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """Does ``text`` hold NUL or a lone surrogate, which a database refuses?"""
    return _UNSTORABLE.search(text) is not None


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates written as escapes (``\\x00``, ``\\udc80``)."""
    if not unstorable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class ScrubbingFilter(logging.Filter):
    """Scrubs a log record's message and traceback text, keeping everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


_FILTER = ScrubbingFilter()


def scrubbed_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, whose records are scrubbed before any handler sees them."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger

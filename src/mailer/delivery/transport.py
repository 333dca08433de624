"""One delivery connection, opened once and reused for every message of a run.

For Django's SMTP backend (and subclasses) the SMTP conversation is held
by mailer (``mailer.delivery.conversation``), recipient by recipient, so that
each recipient's reply is kept: when
the server refuses some RCPT TO and accepts others, the message goes to the
accepted ones and the refused ones are recorded. Django's own ``_send``
discards those replies. Other backends (console, locmem, ESP APIs) get
``send_messages([message])`` and are judged by what it raises and, for
django-anymail, by its status per recipient (``mailer.esp``).
"""

from __future__ import annotations

import contextlib
import smtplib
import time
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from mailer import compat
from mailer.conf import settings
from mailer.delivery import backends, esp
from mailer.delivery.classify import breaks_connection, classify, exception_name
from mailer.delivery.conversation import HandOver, NotHandedOver, converse, no_delay
from mailer.exceptions import MailerError, UndecodableMessage
from mailer.message import codec
from mailer.message.letter import Letter
from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict
from mailer.scrub import scrubbed_logger

logger = scrubbed_logger("mailer.transport")  # replies and tracebacks may quote secrets

# A connection idle this long is checked with NOOP before reuse: servers drop idle clients.
IDLE_CHECK_SECONDS = 10.0


class ConnectionDown(MailerError):
    """The delivery connection could not be opened, or its backend is misconfigured (every
    message would fail alike): stop this run; ``why`` says which."""

    def __init__(self, outcome: Outcome, why: str = "cannot connect to deliver mail") -> None:
        super().__init__(str(outcome.reply))
        self.outcome = outcome
        self.why = why

    @classmethod
    def after(cls, error: BaseException, outcome: Outcome) -> ConnectionDown:
        """The exception that stops the run after ``error`` (``outcome``: the message's)."""
        if esp.misconfigured(error):
            return cls(outcome, "the delivery backend is misconfigured")
        return cls(outcome)


class Transport:
    """The delivery connection for one mailer alias ("" is MAILER_EMAIL_BACKEND)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.backend: BaseEmailBackend | None = None
        self.opened = 0  # connections opened, for statistics and tests
        self.pipelining = settings.SMTP_PIPELINING  # read again as each connection opens
        self.last_used = 0.0

    # -- connection ---------------------------------------------------------------

    def connect(self) -> BaseEmailBackend:
        """The open backend, opening (or reopening) it if needed. May raise."""
        if self.backend is None:
            backend = backends.open_backend(self.alias)
            if isinstance(backend, SMTPBackend) and backend.timeout is None:
                backend.timeout = settings.SMTP_TIMEOUT
            self.backend = backend
        if isinstance(self.backend, SMTPBackend):
            if self.backend.connection is not None and not self._usable(self.backend.connection):
                self.close()
                return self.connect()
            if self.backend.connection is None:
                self.pipelining = settings.SMTP_PIPELINING
                self.backend.open()
                self.opened += 1
                if self.backend.connection is None:  # fail_silently swallowed an error
                    raise smtplib.SMTPConnectError(421, b"the backend could not connect")
                no_delay(self.backend.connection)
            self.last_used = time.monotonic()
        elif not getattr(self, "_open_called", False):
            self.backend.open()
            self._open_called = True
            self.opened += 1
        return self.backend

    @property
    def smtp(self) -> bool:
        """Is the open backend Django's SMTP backend (whose conversation is held here)?"""
        return isinstance(self.backend, SMTPBackend)

    def _usable(self, connection: smtplib.SMTP) -> bool:
        """Is an open SMTP connection still good? Closed ones are not; idle ones are asked."""
        if connection.sock is None:
            return False
        if time.monotonic() - self.last_used < IDLE_CHECK_SECONDS:
            return True
        try:
            return connection.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def close(self) -> None:
        """Close the connection, ignoring errors: the connection is finished either way."""
        backend, self.backend = self.backend, None
        self._open_called = False
        if backend is None:
            return
        try:
            backend.close()
        except Exception as error:
            logger.debug("closing the %r connection failed: %s", self.alias, error)
            connection = getattr(backend, "connection", None)
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
                backend.connection = None  # type: ignore[attr-defined]

    def replace(self, connection: Any) -> None:
        """Adopt the connection an error handler returned (None: reconnect next time)."""
        if connection is None:
            self.close()
        elif connection is not self.backend:
            self.close()
            self.backend = connection

    # -- sending --------------------------------------------------------------------

    def send(
        self, letter: Letter, recipients: list[str], hand_over: HandOver | None = None
    ) -> Outcome:
        """Deliver ``letter`` to ``recipients``; return the outcome, or raise.

        An SMTP server is sent the letter's bytes, rendered from the stored
        document where the renderer can; any other backend is given the
        ``EmailMessage`` Django rebuilds.

        ``hand_over`` is asked at the last moment (see ``HandOver``): an SMTP server
        gets the envelope and the content first, the final "." only once it says
        so; raises ``NotHandedOver`` (the connection closed) when it says no.

        Raises what the backend raised for anything that is not a reply to a
        command (connection failures, timeouts, bad data); after a broken
        connection the transport reconnects on its next message.
        """
        try:
            backend = self.connect()
            if isinstance(backend, SMTPBackend):
                return self._send_smtp(backend, letter, recipients, hand_over)
            if hand_over is not None and not hand_over(True):
                raise NotHandedOver("not handed over: the delivery was called off")
            return self._send_other(backend, letter.email, recipients)
        except NotHandedOver:
            if self.smtp:
                self.close()  # left in the middle of DATA: the next message reconnects
            raise
        except BaseException as error:
            if breaks_connection(error) or esp.misconfigured(error):
                self.close()
            if esp.misconfigured(error):  # not the message's fault: classified transient
                raise ConnectionDown.after(error, classify(error, recipients)) from error
            raise

    def _send_other(
        self, backend: BaseEmailBackend, message: EmailMessage, recipients: list[str]
    ) -> Outcome:
        if sorted(recipients) != sorted(message.recipients()):
            _restrict(message, recipients)
        before = _fingerprint(message)
        sent = backend.send_messages([message])
        changed = _fingerprint(message) != before
        if sent == 0:
            reply = Reply(None, "the backend sent nothing (did it fail silently?)")
            return Outcome(Verdict.TRANSIENT, reply, "", _all(recipients, Verdict.TRANSIENT, reply))
        # django-anymail's answer per recipient, when there is one (``mailer.esp``).
        outcome = esp.recipient_outcome(message, recipients)
        if changed:
            outcome.sent_data = _as_sent(message)
        return outcome

    def _send_smtp(
        self,
        backend: SMTPBackend,
        letter: Letter,
        recipients: list[str],
        hand_over: HandOver | None,
    ) -> Outcome:
        connection = backend.connection
        assert connection is not None
        with _Rendering():
            utf8 = any(_needs_smtputf8(a) for a in letter.addresses(recipients))
        if utf8:
            connection.ehlo_or_helo_if_needed()
            if not connection.has_extn("smtputf8"):
                reply = Reply(
                    None,
                    "an address has a non-ASCII local part and the server does not offer SMTPUTF8",
                )
                return Outcome(
                    Verdict.PERMANENT, reply, "", _all(recipients, Verdict.PERMANENT, reply)
                )
        with _Rendering():
            encoding = letter.encoding
            sender = compat.envelope_address(backend, letter.from_email, encoding, utf8=utf8)
            envelope = [
                (address, compat.envelope_address(backend, address, encoding, utf8=utf8))
                for address in recipients
            ]
            data = letter.render(utf8=utf8)
        return converse(connection, sender, envelope, data, utf8, self.pipelining, hand_over)


class _Rendering:
    """Turning a stored message into an envelope and bytes: no server is involved, so
    whatever fails here is the message's data (UndecodableMessage, failed for good).
    A class, not contextlib's generator, which cost a few µs a message."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if isinstance(error, Exception) and not isinstance(error, UndecodableMessage):
            raise UndecodableMessage(
                f"the message cannot be rendered: {exception_name(error)}: {error}"
            ) from error


def _needs_smtputf8(address: str) -> bool:
    """Does ``address`` have a non-ASCII local part, which only SMTPUTF8 can carry?

    A non-ASCII display name is RFC 2047-encoded and a non-ASCII domain
    IDNA-encoded, so neither needs SMTPUTF8.
    """
    text = str(address)
    if text.isascii():
        return False
    addr_spec = parseaddr(text)[1] or text
    local = addr_spec.rpartition("@")[0] or addr_spec
    return not local.isascii()


def _all(recipients: list[str], verdict: Verdict, reply: Reply) -> list[RecipientResult]:
    return [RecipientResult(address, verdict, reply) for address in recipients]


def _fingerprint(message: EmailMessage) -> tuple[Any, ...]:
    """What a backend may change in a message while sending it, cheaply compared.

    Backends (test backends, some provider backends) add headers or rewrite
    fields; the log is to keep the message as it was sent.
    """
    return (
        message.subject,
        message.body,
        message.from_email,
        list(message.to),
        list(message.cc),
        list(message.bcc),
        list(message.reply_to),
        list(message.extra_headers.items()),
        len(message.attachments),
        len(getattr(message, "alternatives", ())),
    )


def _as_sent(message: EmailMessage) -> str | None:
    """``message`` stored as the backend left it; None if it no longer can be."""
    try:
        return codec.encode(message)
    except Exception as error:  # whatever a backend put in it: the queued copy is logged
        logger.debug("the message as sent cannot be stored: %s", error)
        return None


def _restrict(message: EmailMessage, recipients: list[str]) -> None:
    """Keep only ``recipients`` (for a retry through a backend without per-recipient replies)."""
    keep = {r.lower() for r in recipients}
    message.to = [a for a in message.to if a.lower() in keep]
    message.cc = [a for a in message.cc if a.lower() in keep]
    message.bcc = [a for a in message.bcc if a.lower() in keep]


__all__ = ["HandOver", "Letter", "NotHandedOver", "Transport", "classify"]

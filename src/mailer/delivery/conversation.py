"""The SMTP conversation of one message over an open connection: every reply kept.

MAIL FROM, one RCPT TO per recipient and DATA, pipelined (RFC 2920) where the
server offers it and one command at a time where it does not, and in step with
the server whatever it refuses. The final "." is written only once
``hand_over`` says the message may go (``mailer.delivery.recorder.Admission``):
whatever it waits for overlaps with the envelope's round trips.
"""

from __future__ import annotations

import abc
import re
import smtplib
import socket
from collections.abc import Callable
from typing import Any

from mailer import compat
from mailer.delivery.classify import verdict_for_code
from mailer.exceptions import MailerError
from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict

# Asked just before a message is handed over -- its final "." written, or it is given to a
# backend that is not SMTP: may it go? ``hand_over(False)``: may it go now, without
# waiting? ``hand_over(True)``: wait until it may; False: it must not go at all.
HandOver = Callable[[bool], bool]


class NotHandedOver(MailerError):
    """The message was not handed over: ``hand_over`` said it must not go. A server that had
    its envelope and content, but not the final ".", was disconnected (so it drops it)."""


def converse(
    connection: smtplib.SMTP,
    sender: str,
    envelope: list[tuple[str, str]],
    data: bytes,
    utf8: bool,
    pipelining: bool,
    hand_over: HandOver | None = None,
) -> Outcome:
    """MAIL FROM, one RCPT TO per recipient, DATA: every reply kept. The final "." waits
    for ``hand_over``: whatever it waits for overlaps with the envelope's round trips."""
    connection.ehlo_or_helo_if_needed()
    options: list[str] = []
    if connection.does_esmtp:
        if connection.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if utf8:
            options += ["SMTPUTF8", "BODY=8BITMIME"]
    dialogue: _Dialogue
    if pipelining and connection.has_extn("pipelining"):
        dialogue = _Pipelined(connection, sender, options, [e for _, e in envelope])
    else:
        dialogue = _OneByOne(connection, sender, options)

    code, text = dialogue.mail()
    if code != 250:
        dialogue.abandon(code)
        reply = Reply(code, _text(text))
        verdict = _failure(code)
        return Outcome(
            verdict, reply, "", [RecipientResult(a, verdict, reply) for a, _ in envelope]
        )

    accepted: list[str] = []
    results: dict[str, RecipientResult] = {}
    for address, envelope_address in envelope:
        code, text = dialogue.rcpt(envelope_address)
        if code in (250, 251):
            accepted.append(address)
        else:
            reply = Reply(code, _text(text))
            results[address] = RecipientResult(address, _failure(code), reply, refused=code != 421)
            if code == 421:  # the server is closing: nobody gets this message now
                connection.close()
                return Outcome(
                    Verdict.TRANSIENT,
                    reply,
                    "",
                    [
                        results.get(a) or RecipientResult(a, Verdict.TRANSIENT, reply)
                        for a, _ in envelope
                    ],
                )
    if not accepted:
        dialogue.abandon(0)
        ordered = [results[a] for a, _ in envelope]
        verdict = (
            Verdict.TRANSIENT
            if any(r.verdict is Verdict.TRANSIENT for r in ordered)
            else Verdict.PERMANENT
        )
        return Outcome(verdict, ordered[0].reply, "", ordered, stage="rcpt")

    code, text = dialogue.data()
    if code == 354:
        content = _dot_stuffed(data)
        if hand_over is None or _may_hand_over(connection, hand_over, wait=False):
            connection.send(content)
        else:  # everything but the final ".", which hands the message over
            connection.send(memoryview(content)[: -len(_END)])
            if not _may_hand_over(connection, hand_over, wait=True):
                raise NotHandedOver("not handed over: the delivery was called off")
            connection.send(_END)
        code, text = connection.getreply()
    reply = Reply(code, _text(text))
    if code != 250:
        _reset_after(connection, code)
        for address in accepted:
            results[address] = RecipientResult(address, _failure(code), reply)
    else:
        for address in accepted:
            results[address] = RecipientResult(address, Verdict.SENT, reply)
    ordered = [results[a] for a, _ in envelope]
    if any(r.verdict is Verdict.SENT for r in ordered):
        # Sent to everyone who accepted it; anyone refused is recorded, and a
        # transient refusal makes the caller retry for that recipient alone.
        transient = [r for r in ordered if r.verdict is Verdict.TRANSIENT]
        return Outcome(
            Verdict.TRANSIENT if transient else Verdict.SENT,
            transient[0].reply if transient else reply,
            "",
            ordered,
        )
    verdict = (
        Verdict.TRANSIENT
        if any(r.verdict is Verdict.TRANSIENT for r in ordered)
        else Verdict.PERMANENT
    )
    return Outcome(verdict, reply, "", ordered)


class _Dialogue(abc.ABC):
    """The envelope commands of one message, each reply read when it is wanted."""

    def __init__(self, connection: smtplib.SMTP) -> None:
        self.connection = connection

    @abc.abstractmethod
    def mail(self) -> tuple[int, bytes]: ...

    @abc.abstractmethod
    def rcpt(self, address: str) -> tuple[int, bytes]: ...

    @abc.abstractmethod
    def data(self) -> tuple[int, bytes]:
        """The reply to DATA: 354 means the content is awaited."""

    def abandon(self, code: int) -> None:
        """Give up on this message after a refusal (``code``: the refusal that ended it)."""
        _reset_after(self.connection, code)


class _OneByOne(_Dialogue):
    """One command, one reply: for servers without PIPELINING (and by choice)."""

    def __init__(self, connection: smtplib.SMTP, sender: str, options: list[str]) -> None:
        super().__init__(connection)
        self.sender = sender
        self.options = options

    def mail(self) -> tuple[int, bytes]:
        # As smtplib's mail() does: SMTPUTF8 lets the commands carry UTF-8.
        self.connection.command_encoding = "utf-8" if "SMTPUTF8" in self.options else "ascii"
        extra = "".join(f" {option}" for option in self.options)
        self.connection.putcmd("mail", f"FROM:{_quoted(self.sender)}{extra}")
        return self.connection.getreply()

    def rcpt(self, address: str) -> tuple[int, bytes]:
        self.connection.putcmd("rcpt", f"TO:{_quoted(address)}")
        return self.connection.getreply()

    def data(self) -> tuple[int, bytes]:
        return self.connection.docmd("data")


class _Pipelined(_Dialogue):
    """RFC 2920: MAIL FROM, every RCPT TO and DATA in one write; replies read in order.

    The content is sent only after DATA was answered 354, so a refused
    envelope never transfers the message.
    """

    def __init__(
        self, connection: smtplib.SMTP, sender: str, options: list[str], recipients: list[str]
    ) -> None:
        super().__init__(connection)
        # As smtplib's mail() does: SMTPUTF8 lets the commands carry UTF-8.
        connection.command_encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        extra = "".join(f" {option}" for option in options)
        commands = [f"MAIL FROM:{_quoted(sender)}{extra}"]
        commands += [f"RCPT TO:{_quoted(address)}" for address in recipients]
        commands.append("DATA")
        connection.send("".join(f"{command}\r\n" for command in commands))
        self.unread = len(commands)

    def _next(self) -> tuple[int, bytes]:
        self.unread -= 1
        return self.connection.getreply()

    def mail(self) -> tuple[int, bytes]:
        return self._next()

    def rcpt(self, address: str) -> tuple[int, bytes]:
        return self._next()

    def data(self) -> tuple[int, bytes]:
        return self._next()

    def abandon(self, code: int) -> None:
        if code != 421 and self.connection.sock is not None:
            # The rest of the group was sent: read its replies before anything else.
            last = 0
            try:
                while self.unread:
                    last, _ = self._next()
                if last == 354:  # DATA accepted after all: end it with no content
                    self.connection.send(b".\r\n")
                    self.connection.getreply()
            except smtplib.SMTPServerDisconnected:
                self.connection.close()
                return
        super().abandon(code)


def _may_hand_over(connection: smtplib.SMTP, hand_over: HandOver, *, wait: bool) -> bool:
    """Ask ``hand_over`` in the middle of DATA. When the message must not go, or asking
    raised, the connection is closed: a server drops a message whose final "." never
    came, and no other command may follow content (not even QUIT)."""
    try:
        admitted = hand_over(wait)
    except BaseException:
        connection.close()
        raise
    if wait and not admitted:
        connection.close()
    return admitted


def no_delay(connection: smtplib.SMTP) -> None:
    """Send each write at once: the final "." may follow the content by itself, and must
    not wait for the server to acknowledge the content (Nagle's algorithm)."""
    try:
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (a test double, a socket family without the option)
        pass


def _quoted(address: str) -> str:
    """``<address>`` as smtplib's quoteaddr() makes it, without its parser for a plain one."""
    return f"<{address}>" if compat.plain_address(address) else smtplib.quoteaddr(address)


def _dot_stuffed(data: bytes) -> bytes:
    """The content as DATA carries it: CRLF line ends, leading dots doubled, ended by a dot."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:  # (rendered: CRLF already)
        data = _LINE_ENDS.sub(b"\r\n", data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + _END


_END = b".\r\n"  # after content ending in CRLF: the end of DATA
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _failure(code: int) -> Verdict:
    verdict = verdict_for_code(code)
    return Verdict.TRANSIENT if verdict is Verdict.SENT else verdict


def _reset_after(connection: smtplib.SMTP, code: int) -> None:
    if code == 421 or connection.sock is None:
        connection.close()
        return
    try:
        connection.rset()
    except smtplib.SMTPServerDisconnected:
        connection.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


__all__ = ["HandOver", "NotHandedOver", "converse", "no_delay"]

"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1), with faults on demand.

``SMTPServer`` records every message it accepts, in order, and can be told
to misbehave: refuse the first K attempts with a 4xx code, refuse chosen
recipients or messages with any code, drop the connection after DATA, answer
slowly, or add latency to every message. It knows, per connection, which
message is *in flight* (its final "." read, its reply not yet given), and
``in_flight()`` says so at the moment a client is killed. ``SilentServer``
accepts TCP connections and never says a word.

Messages carry a unique token (see ``tests.samples``), so a test can say
"delivered exactly once" about each one.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedMessage
from typing import Any

from aiosmtpd.controller import Controller

TOKEN = re.compile(rb"tok-[0-9a-f]{8,}(?:-\d+)?")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)
    data_at: float = 0.0  # time.monotonic() when the final "." had been read
    peer: Any = None  # the client's (host, port): one per connection
    hello_at: float = 0.0  # time.monotonic() of the connection's EHLO

    @property
    def message(self) -> ParsedMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def token(self) -> str | None:
        found = TOKEN.search(self.data)
        return found.group().decode() if found else None


@dataclass
class Faults:
    """What the server does wrong. Matching is on the message's bytes (for tokens) or address."""

    # First K DATA attempts of messages matching `match` (b"" = all) get `code text`.
    transient_first: int = 0
    transient_code: str = "451 4.3.0 Try again later"
    transient_match: bytes = b""
    # Address -> reply for RCPT TO (e.g. "550 5.1.1 No such user").
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    # Messages containing a key get the reply at end of DATA.
    refuse_data: dict[bytes, str] = field(default_factory=dict)
    # Reply to MAIL FROM, if set; or to MAIL FROM of a given sender.
    refuse_mail: str | None = None
    refuse_sender: dict[str, str] = field(default_factory=dict)
    # Close the connection instead of answering the end of DATA, this many times.
    drop_after_data: int = 0
    drop_match: bytes = b""
    # Seconds to wait before answering the end of DATA.
    data_delay: float = 0.0
    # Seconds to wait before answering RCPT TO.
    rcpt_delay: float = 0.0


# The answer to a connection left over from before ``reset()``.
STALE = "421 4.3.0 connection opened before the test server was reset"


class _Handler:
    def __init__(self, server: SMTPServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        session.hello_at = time.monotonic()
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        faults = self.server.faults
        if self.server.stale(server):
            return STALE
        self.server.commands.append(("MAIL", address))
        # Input already waiting behind MAIL FROM: the client sent its envelope in one go.
        self.server.pipelined.append(bool(server._reader._buffer))
        if faults.refuse_mail:
            return faults.refuse_mail
        if address.lower() in faults.refuse_sender:
            return faults.refuse_sender[address.lower()]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        faults = self.server.faults
        if self.server.stale(server):
            return STALE
        self.server.commands.append(("RCPT", address))
        if faults.rcpt_delay:
            await asyncio.sleep(faults.rcpt_delay)
        reply = faults.refuse_rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        data_at = time.monotonic()
        found = TOKEN.search(data)
        with self.server.lock:
            self.server.flying[session.peer] = found.group().decode() if found else ""
        # Like a real server, it has the message once the final "." is in: a client
        # that goes away before the reply does not take it back.
        return await asyncio.shield(self._reply_to_data(server, session, envelope, data, data_at))

    async def _reply_to_data(
        self, server: Any, session: Any, envelope: Any, data: bytes, data_at: float
    ) -> str:
        try:
            return await self._judge_data(server, session, envelope, data, data_at)
        finally:
            with self.server.lock:
                self.server.flying.pop(session.peer, None)

    async def _judge_data(
        self, server: Any, session: Any, envelope: Any, data: bytes, data_at: float
    ) -> str:
        faults = self.server.faults
        with self.server.lock:
            self.server.data_attempts += 1
        if faults.data_delay:
            await asyncio.sleep(faults.data_delay)
        if faults.drop_after_data and (not faults.drop_match or faults.drop_match in data):
            with self.server.lock:
                faults.drop_after_data -= 1
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        if faults.transient_first and (
            not faults.transient_match or faults.transient_match in data
        ):
            with self.server.lock:
                faults.transient_first -= 1
            return faults.transient_code
        for key, reply in faults.refuse_data.items():
            if key in data:
                return reply
        with self.server.lock:
            if self.server.stale(server):
                return STALE  # opened before reset(): what an earlier test sent
            self.server.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    data,
                    [str(option) for option in envelope.mail_options],
                    data_at,
                    session.peer,
                    getattr(session, "hello_at", data_at),
                )
            )
            number = len(self.server.received)
        return f"250 2.0.0 Ok: queued as Q{number:06d}"


class SMTPServer:
    """aiosmtpd in a thread; ``received`` lists what it accepted."""

    def __init__(self, *, smtputf8: bool = True) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.commands: list[tuple[str, str]] = []
        # Offer PIPELINING (as Postfix and the hosted relays do); tests may turn it off.
        self.pipelining = True
        self.pipelined: list[bool] = []  # per MAIL FROM: did the rest of the envelope come with it?
        self.data_attempts = 0
        self.faults = Faults()
        self.connections = 0
        self.flying: dict[Any, str] = {}  # peer -> token of the message awaiting its reply
        # reset() starts a new epoch; a connection belongs to the epoch it was opened in,
        # so a slow reply to an earlier test's client never lands in a later test's list.
        self.epoch = 0
        self.controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=_free_port(),
            enable_SMTPUTF8=smtputf8,
            ready_timeout=10,
            data_size_limit=64 * 1024 * 1024,
        )
        self.controller.factory = self._counting(self.controller.factory)  # type: ignore[method-assign]

    def _counting(self, factory: Any) -> Any:
        def make() -> Any:
            with self.lock:
                self.connections += 1
                epoch = self.epoch
            protocol = factory()
            protocol.mailer_epoch = epoch
            return protocol

        return make

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def stale(self, protocol: Any) -> bool:
        """Was this connection opened before the last ``reset()``?"""
        return getattr(protocol, "mailer_epoch", self.epoch) != self.epoch

    def reset(self) -> None:
        with self.lock:
            self.epoch += 1
            self.flying.clear()
            self.received.clear()
            self.commands.clear()
            self.pipelined.clear()
            self.pipelining = True
            self.data_attempts = 0
            self.connections = 0
            self.faults = Faults()

    # -- what arrived -------------------------------------------------------------

    def tokens(self) -> list[str]:
        with self.lock:
            return [r.token for r in self.received if r.token]

    def by_token(self, token: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.token == token]

    def in_flight(self) -> dict[Any, str]:
        """Per connection (peer), the token of the message whose final "." was read and
        whose reply has not been given yet."""
        with self.lock:
            return dict(self.flying)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            return list(self.received)


class _TCPServer:
    """A listening socket on 127.0.0.1 whose connections a thread hands to ``serve``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        """Talk to one client (this thread serves one at a time)."""

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class SilentServer(_TCPServer):
    """Accepts connections and never answers: the server that hangs."""


class ScriptedServer(_TCPServer):
    """A pipelining SMTP server answering each command from a script, for replies aiosmtpd
    never gives (such as 354 to DATA after every RCPT TO was refused).

    ``script`` maps a command verb (``"RCPT"``) to its reply; other commands get
    250, DATA gets 354, and the content 250. ``lines`` keeps what the client sent.
    """

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.lines: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"220 scripted\r\n")
            in_data = False
            for line in reader:
                self.lines.append(line)
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        conn.sendall(b"250 2.0.0 queued\r\n")
                    continue
                verb = line[:4].decode().upper()
                if verb == "EHLO":
                    conn.sendall(b"250-scripted\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
                    continue
                reply = self.script.get(verb) or {"DATA": "354 go on"}.get(verb, "250 OK")
                in_data = reply.startswith("354")
                conn.sendall(reply.encode() + b"\r\n")
                if verb == "QUIT":
                    break


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

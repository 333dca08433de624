"""The benchmark's SMTP sink: one process, standard library only.

It accepts every message and offers PIPELINING as Postfix and the hosted
relays do, or leaves it out of its EHLO reply as aiosmtpd and many relays do
(the "pipelining" command; clients that do not pipeline are served the same
either way). It can wait a fixed time before answering the end of DATA (the
"50 ms server"), and records, per message, the unique token found in its
headers and the time (``time.monotonic()``, which is the same clock in every
process of this machine) when it accepted it. It also counts TCP connections.

    python bench/sink.py            # prints {"smtp": PORT, "control": PORT} and serves

The control port speaks one JSON object per line, answered by one JSON line:

    {"cmd": "reset"}                               forget everything received
    {"cmd": "latency", "seconds": 0.05}            delay before answering DATA
    {"cmd": "pipelining", "on": false}             offer PIPELINING to new EHLOs or not
    {"cmd": "stats"}                               connections, messages, first/last accept
    {"cmd": "verify", "prefix": "p", "n": 100}     tokens p-0 .. p-99: missing, duplicated,
                                                   unexpected ("count": 10: any 10, once each)
    {"cmd": "wait", "count": 100, "timeout": 60}   until that many messages arrived
    {"cmd": "times", "tokens": ["p-0"]}            accept time of each token (null: not yet)
    {"cmd": "dupes"}                               tokens accepted more than once: for
                                                   each copy, when its connection opened
    {"cmd": "timeline"}                            per connection, in the order they opened:
                                                   when it opened, and each accept's time
    {"cmd": "quit"}
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

TOKEN = re.compile(rb"tok-([0-9a-z]+)-(\d+)")
TERMINATOR = b"\r\n.\r\n"
MAX_SIZE = 256 * 1024 * 1024


class State:
    def __init__(self) -> None:
        self.latency = 0.0
        self.pipelining = True
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.messages = 0
        self.no_token = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.seen: dict[bytes, int] = {}  # token -> times accepted
        self.times: dict[bytes, float] = {}  # token -> first accept time
        # Of tokens accepted more than once: for each copy, when the connection that
        # brought it was opened.
        self.opened: dict[bytes, list[float]] = {}
        self.first_opened: dict[bytes, float] = {}
        self.accepts: dict[int, list[float]] = {}  # connection number -> accept times
        self.opened_at: dict[int, float] = {}  # connection number -> when it opened

    def accept(self, data: bytes, opened: float = 0.0, connection: int = 0) -> None:
        now = time.monotonic()
        self.accepts.setdefault(connection, []).append(now)
        self.messages += 1
        self.bytes += len(data)
        if self.first is None:
            self.first = now
        self.last = now
        end = data.find(b"\r\n\r\n")
        found = TOKEN.search(data, 0, end if end >= 0 else len(data))
        if found is None:
            self.no_token += 1
            return
        token = found.group()
        count = self.seen.get(token, 0)
        self.seen[token] = count + 1
        if not count:
            self.times[token] = now
            self.first_opened[token] = opened
        else:
            self.opened.setdefault(token, [self.first_opened[token]]).append(opened)

    def stats(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "messages": self.messages,
            "no_token": self.no_token,
            "bytes": self.bytes,
            "first": self.first,
            "last": self.last,
            "latency": self.latency,
            "pipelining": self.pipelining,
        }

    def verify(self, prefix: str, n: int, count: int | None = None) -> dict[str, object]:
        """Every token prefix-0 .. prefix-(n-1) exactly once, and nothing else.

        With ``count``: that many of those tokens (any of them), each exactly once.
        """
        missing = duplicated = 0
        examples: list[str] = []
        for i in range(n):
            times = self.seen.get(f"{prefix}-{i}".encode(), 0)
            if times == 0:
                missing += 1
                if len(examples) < 5:
                    examples.append(f"missing {prefix}-{i}")
            elif times > 1:
                duplicated += 1
                if len(examples) < 5:
                    examples.append(f"{prefix}-{i} x{times}")
        head = f"{prefix}-".encode()
        unexpected = sum(1 for t in self.seen if not t.startswith(head)) + self.no_token
        expected_total = n - missing
        extra_same_prefix = sum(1 for t in self.seen if t.startswith(head)) - expected_total
        arrived_ok = missing == 0 if count is None else n - missing == count
        if count is not None:
            examples = [e for e in examples if not e.startswith("missing")]
        return {
            "ok": arrived_ok and duplicated == 0 and unexpected == 0 and extra_same_prefix == 0,
            "arrived": n - missing,
            "expected": n,
            "missing": missing,
            "duplicated": duplicated,
            "unexpected": unexpected + extra_same_prefix,
            "examples": examples,
        }


STATE = State()
QUIT = asyncio.Event()


class SMTPSession(asyncio.Protocol):
    """Just enough SMTP for smtplib and Django's backend: EHLO, MAIL, RCPT, DATA, RSET, QUIT."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()
        self.in_data = False
        self.busy = False  # waiting to answer DATA: hold further input
        self.scan = 0
        self.opened = time.monotonic()
        STATE.connections += 1
        self.number = STATE.connections
        STATE.opened_at[self.number] = self.opened
        transport.write(b"220 sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while not self.busy:
            if self.in_data:
                # The buffer starts with the CRLF that ended "DATA", so the terminator
                # is found even for an empty message.
                at = self.buffer.find(TERMINATOR, self.scan)
                if at < 0:
                    self.scan = max(len(self.buffer) - 4, 0)
                    if len(self.buffer) > MAX_SIZE:
                        self.transport.write(b"552 too big\r\n")
                        self.transport.close()
                    return
                message, rest = bytes(self.buffer[2 : at + 2]), self.buffer[at + 5 :]
                self.buffer = bytearray(rest)
                self.in_data = False
                STATE.accept(message, self.opened, self.number)
                if STATE.latency > 0:
                    self.busy = True
                    asyncio.get_running_loop().call_later(STATE.latency, self._answer_data)
                    return
                self.transport.write(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._command(line)

    def _answer_data(self) -> None:
        self.busy = False
        if not self.transport.is_closing():
            self.transport.write(b"250 2.0.0 Ok: queued\r\n")
            self._process()

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        write = self.transport.write
        if verb == b"EHLO":
            pipelining = b"250-PIPELINING\r\n" if STATE.pipelining else b""
            write(
                b"250-sink\r\n"
                + pipelining
                + b"250-SIZE 268435456\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            )
        elif verb == b"HELO":
            write(b"250 sink\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            write(b"250 OK\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.scan = 0
            self.buffer[0:0] = b"\r\n"
            write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            write(b"221 Bye\r\n")
            self.transport.close()
        else:
            write(b"502 Command not implemented\r\n")


async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        request = json.loads(line)
        command = request["cmd"]
        answer: object
        if command == "reset":
            STATE.reset()
            answer = {"ok": True}
        elif command == "latency":
            STATE.latency = float(request["seconds"])
            answer = {"ok": True}
        elif command == "pipelining":
            STATE.pipelining = bool(request["on"])
            answer = {"ok": True}
        elif command == "stats":
            answer = STATE.stats()
        elif command == "verify":
            answer = STATE.verify(request["prefix"], int(request["n"]), request.get("count"))
        elif command == "wait":
            deadline = time.monotonic() + float(request.get("timeout", 60))
            while STATE.messages < int(request["count"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            answer = STATE.stats()
        elif command == "times":
            answer = {t: STATE.times.get(t.encode()) for t in request["tokens"]}
        elif command == "dupes":
            answer = {t.decode(): opened for t, opened in STATE.opened.items()}
        elif command == "timeline":
            answer = [
                {"opened": opened, "accepts": STATE.accepts.get(number, [])}
                for number, opened in sorted(STATE.opened_at.items())
            ]
        elif command == "quit":
            writer.write(b'{"ok": true}\n')
            await writer.drain()
            QUIT.set()
            return
        else:
            answer = {"error": f"unknown command {command!r}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
    writer.close()


async def main() -> None:
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(SMTPSession, "127.0.0.1", 0, backlog=256)
    ctl = await asyncio.start_server(control, "127.0.0.1", 0)
    ports = {
        "smtp": smtp.sockets[0].getsockname()[1],
        "control": ctl.sockets[0].getsockname()[1],
    }
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    await QUIT.wait()


if __name__ == "__main__":
    asyncio.run(main())

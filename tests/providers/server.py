"""A local HTTP server on 127.0.0.1 that answers as an email provider's send API does.

One ``ProviderAPI`` per provider (see ``postmark``, ``mailgun``, ``ses``): a threaded
server on an ephemeral port. A test scripts it with ``queue(...)``: each request
takes the next step (a ``Reply`` from the provider's catalogue, ``hang()`` past the
client's timeout, or ``drop()`` of the connection); when the queue is empty the
provider's own success answer is given. Every request that reached the server is
recorded (method, path, headers, body; parsed JSON, form fields, raw MIME and
recipients through the provider's ``Spec``), so a test can say what reached the
provider and how many times.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = re.compile(r"tok-[0-9a-f]{8,}(?:-\d+)?")
# How long a hung request is held at most, should its client never give up.
HANG_LIMIT = 120.0


@dataclass
class Request:
    """One request as the provider received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes
    complete: bool  # False: the connection was dropped before the body was read
    step: str  # the name of the answer it got ("hang", "drop", a catalogue name)
    spec: Spec = field(repr=False)
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, list[str]]:
        """Form fields, from an urlencoded or a multipart/form-data body."""
        content_type = self.header("content-type", "") or ""
        if content_type.startswith("multipart/form-data"):
            fields: dict[str, list[str]] = {}
            for part in self._multipart():
                if part.get_filename() is None:
                    name = part.get_param("name", header="content-disposition")
                    fields.setdefault(str(name), []).append(part.get_content())
            return fields
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def files(self) -> list[tuple[str, str, bytes]]:
        """(field, file name, content) of each file in a multipart body."""
        return [
            (
                str(part.get_param("name", header="content-disposition")),
                str(part.get_filename()),
                part.get_payload(decode=True) or b"",
            )
            for part in self._multipart()
            if part.get_filename() is not None
        ]

    def _multipart(self) -> list[ParsedMessage]:
        head = f"Content-Type: {self.header('content-type')}\r\n\r\n".encode()
        parsed = email.message_from_bytes(head + self.body, policy=email.policy.HTTP)
        return list(parsed.iter_parts())  # type: ignore[attr-defined]

    @property
    def message(self) -> ParsedMessage | None:
        """The raw MIME message the request carries, if the provider's API takes one."""
        return self.spec.message(self)

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient (addr-spec) the request asks the provider to send to."""
        return self.spec.recipients(self)

    @property
    def tokens(self) -> list[str]:
        """The sample tokens (``tests.samples``) of the messages the request carries (none
        when the connection was dropped before the body was read)."""
        if not self.complete:
            return []
        return sorted(set(TOKEN.findall(self.spec.text(self))))


@dataclass(frozen=True)
class Reply:
    """An HTTP answer. ``body``: JSON-able value, str or bytes, or a function of the
    request giving one (for answers that echo the request, as a success does)."""

    name: str
    status: int
    body: Any = b""
    headers: tuple[tuple[str, str], ...] = ()
    reason: str | None = None

    def render(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        body = self.body(request) if callable(self.body) else self.body
        headers = list(self.headers)
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        else:
            data = json.dumps(body).encode()
            if not any(name.lower() == "content-type" for name, _ in headers):
                headers.append(("Content-Type", "application/json"))
        return self.status, headers, data


@dataclass(frozen=True)
class Hang:
    """Read the request, then answer nothing until the client gives up (its timeout)."""

    name: str = "hang"


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer: after reading the whole request, or, with
    ``mid_request``, after its headers only (the body left unread)."""

    mid_request: bool = False

    @property
    def name(self) -> str:
        return "drop mid-request" if self.mid_request else "drop"


Step = Reply | Hang | Drop


def hang() -> Hang:
    """Hold the request past the client's timeout (anymail's REQUESTS_TIMEOUT, boto's
    read_timeout): the provider may have sent it, the client cannot know."""
    return Hang()


def drop(mid_request: bool = False) -> Drop:
    """Close the connection without answering."""
    return Drop(mid_request)


class Spec:
    """What differs between providers: the default answer and how to read a request."""

    name = "provider"

    def default(self) -> Reply:
        raise NotImplementedError

    def recipients(self, request: Request) -> list[str]:
        raise NotImplementedError

    def message(self, request: Request) -> ParsedMessage | None:
        return None

    def text(self, request: Request) -> str:
        """The request's content as text, for finding sample tokens."""
        return request.body.decode("utf-8", "replace")


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, api: ProviderAPI) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock handlers waiting on idle keep-alive connections."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests and botocore expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.api._handle(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST


class ProviderAPI:
    """One provider's API on 127.0.0.1: scripted answers, every request recorded."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._lock = threading.Condition()
        self._steps: deque[Step] = deque()
        self._default: Step | None = None
        self._requests: list[Request] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Life cycle (the fixtures in tests/providers/fixtures.py start and stop it).

    def start(self) -> ProviderAPI:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.spec.name}-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget the requests and the script of the previous test."""
        with self._lock:
            self._steps.clear()
            self._requests.clear()
            self._default = None
        if self._server is not None:
            self._server.close_connections()

    # The script.

    def queue(self, *steps: Step) -> None:
        """Answer the next requests with these steps, in order; then the default."""
        with self._lock:
            self._steps.extend(steps)

    def always(self, step: Step | None) -> None:
        """Answer every request beyond the queue with ``step`` (None: the provider's success)."""
        with self._lock:
            self._default = step

    @property
    def unused(self) -> list[Step]:
        """Queued steps no request has taken yet."""
        with self._lock:
            return list(self._steps)

    # What reached the provider.

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Request]:
        """The requests, once at least ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.spec.name}: {len(self._requests)} requests, expected {count}"
                    )
                self._lock.wait(left)
            return list(self._requests)

    def requests_for(self, token: str) -> list[Request]:
        """The requests that carried the sample message with this token."""
        return [request for request in self.requests if token in request.tokens]

    def received_once(self, token: str) -> Request:
        """The one request that carried the sample message with this token; it is an
        assertion error if the message reached the provider never or more than once."""
        found = self.requests_for(token)
        assert len(found) == 1, (
            f"{self.spec.name}: {token} reached the provider {len(found)} times "
            f"(requests: {[(r.path, r.step) for r in self.requests]})"
        )
        return found[0]

    # Serving (in the handler threads).

    def _next_step(self) -> Step:
        with self._lock:
            if self._steps:
                return self._steps.popleft()
            return self._default or self.spec.default()

    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _handle(self, handler: _Handler) -> None:
        step = self._next_step()
        mid_request = isinstance(step, Drop) and step.mid_request
        length = int(handler.headers.get("Content-Length") or 0)
        body = b"" if mid_request else handler.rfile.read(length)
        split = urlsplit(handler.path)
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query),
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            complete=not mid_request,
            step=step.name,
            spec=self.spec,
        )
        self._record(request)
        if isinstance(step, Drop):
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(step, Hang):
            self._hold(handler.connection)
            handler.close_connection = True
            return
        status, headers, data = step.render(request)
        handler.send_response(status, step.reason)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _hold(self, connection: socket.socket) -> None:
        """Wait until the client closes the connection (it timed out) or the server stops."""
        deadline = time.monotonic() + HANG_LIMIT
        while not self._stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([connection], [], [], 0.05)
            if readable:
                try:
                    if not connection.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return


@contextmanager
def running(spec: Spec) -> Iterator[ProviderAPI]:
    """A started ProviderAPI, stopped on the way out whatever happened."""
    api = ProviderAPI(spec).start()
    try:
        yield api
    finally:
        api.stop()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound but not listening: connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def addresses(values: Sequence[str] | str | None) -> list[str]:
    """The addr-specs in header-style address lists ("Ann <a@x>, b@y")."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [address for _, address in email.utils.getaddresses(list(values)) if address]

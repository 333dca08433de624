"""Talking to the sink's control port (see bench/sink.py). Standard library only."""

from __future__ import annotations

import json
import socket
from typing import Any


class Sink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> Any:
        self.file.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("the sink closed its control connection")
        return json.loads(line)

    def reset(self) -> None:
        self.call("reset")

    def latency(self, seconds: float) -> None:
        self.call("latency", seconds=seconds)

    def pipelining(self, on: bool) -> None:
        self.call("pipelining", on=on)

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def verify(self, prefix: str, n: int, count: int | None = None) -> dict[str, Any]:
        return self.call("verify", prefix=prefix, n=n, count=count)

    def wait(self, count: int, timeout: float = 60) -> dict[str, Any]:
        return self.call("wait", count=count, timeout=timeout)

    def times(self, tokens: list[str]) -> dict[str, float | None]:
        return self.call("times", tokens=tokens)

    def dupes(self) -> dict[str, list[float]]:
        """Tokens accepted more than once: for each copy, when its connection opened."""
        return self.call("dupes")

    def timeline(self) -> list[dict[str, Any]]:
        """Per connection, in the order they opened: ``opened`` and its ``accepts`` times."""
        return self.call("timeline")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

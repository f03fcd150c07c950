"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 in a thread.

It verifies every signature with :func:`core_ledger.webhooks.verify`, records every request,
and can be told to fail some requests, answer slowly, or hold a request until released.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core_ledger.webhooks import EVENT_ID_HEADER, verify


@dataclass
class Received:
    event_id: int
    body_id: int
    path: str
    valid: bool
    status: int
    at: float


@dataclass
class Receiver:
    """What the server saw, and how it answers (``decide`` picks a status and a delay)."""

    secrets: dict[str, str]  # path -> secret
    decide: Callable[[int, str], tuple[int, float]] = lambda n, path: (200, 0.0)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def handle(self, path: str, headers: Any, body: bytes) -> int:
        with self.lock:
            n = len(self.requests) + sum(self.in_flight.values())
            self.in_flight[path] = self.in_flight.get(path, 0) + 1
            self.max_in_flight[path] = max(self.max_in_flight.get(path, 0), self.in_flight[path])
        try:
            valid = verify(self.secrets.get(path, ""), dict(headers.items()), body)
            status, delay = self.decide(n, path)
            if delay:
                time.sleep(delay)
            payload = json.loads(body)
            with self.lock:
                self.requests.append(
                    Received(
                        int(headers.get(EVENT_ID_HEADER, "0")),
                        int(payload["id"]),
                        path,
                        valid,
                        status,
                        time.monotonic(),
                    )
                )
            return status
        finally:
            with self.lock:
                self.in_flight[path] -= 1

    def acknowledged(self, path: str | None = None) -> list[int]:
        """Event ids answered with a 2xx, in the order they arrived."""
        with self.lock:
            return [
                r.event_id
                for r in self.requests
                if 200 <= r.status < 300 and (path is None or r.path == path)
            ]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = receiver.handle(self.path, self.headers, body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the worker gave up (timeout) or died

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running(receiver: Receiver) -> Generator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def flaky(rng: random.Random, slow: float) -> Callable[[int, str], tuple[int, float]]:
    """Fails a third of the requests at random (500), answers some too slowly."""

    def decide(n: int, path: str) -> tuple[int, float]:
        roll = rng.random()
        if roll < 1 / 3:
            return 500, 0.0
        if roll < 0.4:
            return 200, slow  # past the worker's timeout: it counts as a failure
        return 200, 0.0

    return decide

"""A small closed-loop HTTP/1.1 load generator (asyncio streams, keep-alive), for the REST scenario.

Each of ``connections`` connections sends one request, reads the whole response, records the
latency, and sends the next, for ``duration`` seconds. Raw streams rather than an HTTP client
library: the generator shares the machine's two cores with gunicorn and PostgreSQL, so it must
cost as little CPU per request as possible.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from typing import Any

from bench.common import Run


def _request(method: str, path: str, host: str, token: str, body: bytes | None) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Token {token}",
        "Accept: application/json",
        "Connection: keep-alive",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            close = True
        elif name == "transfer-encoding":
            raise RuntimeError("chunked responses are not expected from these views")
    if length:
        await reader.readexactly(length)
    return status, close


async def _client(
    port: int,
    method: str,
    path: str,
    tokens: Sequence[str],
    body: bytes | None,
    expect: int,
    end: float,
    run: Run,
    seed: int,
) -> None:
    rng = random.Random(seed)
    host = f"127.0.0.1:{port}"
    requests = [_request(method, path, host, t, body) for t in tokens]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            writer.write(requests[rng.randrange(len(requests))])
            status, close = await _read_response(reader)
            run.latencies.append(time.perf_counter() - t0)
            if status == expect:
                run.ops += 1
            else:
                run.errors += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def _load(
    port: int,
    method: str,
    path: str,
    tokens: Sequence[str],
    body: Any,
    expect: int,
    connections: int,
    duration: float,
) -> Run:
    raw = None if body is None else json.dumps(body).encode()
    run = Run()
    start = time.perf_counter()
    end = start + duration
    await asyncio.gather(
        *(
            _client(port, method, path, tokens, raw, expect, end, run, seed)
            for seed in range(connections)
        )
    )
    run.seconds = time.perf_counter() - start
    return run


def load(
    port: int,
    method: str,
    path: str,
    tokens: Sequence[str],
    *,
    body: Any = None,
    expect: int = 200,
    connections: int = 4,
    duration: float = 30.0,
) -> Run:
    """Drive ``method path`` with random tokens on ``connections`` keep-alive connections."""
    return asyncio.run(_load(port, method, path, tokens, body, expect, connections, duration))

"""Scenario: Django's psycopg pool (``DATABASE_POOL=1``) against persistent connections
(``CONN_MAX_AGE``), each under its own gunicorn with the same shape, the same spend posted
through ``POST /api/alpha/entries/`` at 4 connections, interleaved in slices.

With ``CONN_MAX_AGE`` each worker thread keeps its own connection; the pool hands one out per
request and takes it back (``min_size`` 2, ``max_size`` 10 per worker process). On one machine
the pool's bookkeeping is what it costs; where it pays is many app threads over few database
connections (README "Scaling out").
"""

from __future__ import annotations

import subprocess

from bench import loadgen
from bench.common import create_tokens, create_users, reset
from bench.interleave import Slices
from bench.report import Context, Row
from bench.rest import SPEND, _free_port, _in_child, start_gunicorn

NAME = "pool"
CONNECTIONS = 4


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 5_000
    rounds, seconds = (2, 0.5) if ctx.smoke else (4, 3.0)
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    tokens = create_tokens(ctx.url, ids[: min(users, 1_000)])
    servers = {}
    try:
        for name, env in (
            ("CONN_MAX_AGE=600", {"CONN_MAX_AGE": "600", "DATABASE_POOL": "0"}),
            ("DATABASE_POOL=1", {"DATABASE_POOL": "1"}),
        ):
            port = _free_port()
            servers[name] = (port, start_gunicorn(ctx.url, port, **env))
        for port, _ in servers.values():  # warm every worker thread and its connection
            loadgen.load(
                port,
                "POST",
                "/api/alpha/entries/",
                tokens,
                body=SPEND,
                expect=201,
                connections=CONNECTIONS * 2,
                duration=1.0,
            )
        got = {name: Slices() for name in servers}
        for round_ in range(rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                port, _ = servers[name]
                got[name].runs.append(
                    _in_child(
                        port,
                        "POST",
                        "/api/alpha/entries/",
                        tokens,
                        SPEND,
                        201,
                        seconds,
                        CONNECTIONS,
                    )
                )
    finally:
        for _, proc in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    persistent, pool = got["CONN_MAX_AGE=600"], got["DATABASE_POOL=1"]
    for name, slices in got.items():
        print(
            f"  {name:<18} {slices.text():>16}  p50 {slices.pct(50):6.2f} ms  "
            f"p99 {slices.pct(99):6.2f} ms  ({slices.errors} errors)",
            flush=True,
        )
    ctx.record(NAME, {name: s.summary() for name, s in got.items()})
    return [
        Row(
            "pool: REST spend, DATABASE_POOL=1 vs CONN_MAX_AGE",
            "req/s",
            pool.median,
            persistent.median,
            spread=f"±{pool.spread:.0%} / ±{persistent.spread:.0%}",
            detail=f"p99 {pool.pct(99):.1f} vs {persistent.pct(99):.1f} ms",
        )
    ]

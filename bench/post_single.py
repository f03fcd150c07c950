"""Scenario 1: posts from one client, random users out of 10,000: the service, plain psycopg and
django-hordak, interleaved (``bench.posts``)."""

from __future__ import annotations

from bench.common import create_users, reset
from bench.posts import Peer, compare
from bench.report import Context, Row

NAME = "post_single"


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    rounds, seconds = (2, 0.3) if ctx.smoke else (10, 1.0)
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    peer = Peer.prepare(ctx.url, 50 if ctx.smoke else 1_000)
    print(f"  {users} users; one process; {rounds} rounds of {seconds:g} s slices per side")
    rows, figures = compare(
        ctx,
        label="1. post, 1 client",
        processes=1,
        user_ids=ids,
        peer_accounts=None if peer is None else peer.accounts,
        rounds=rounds,
        seconds=seconds,
        psycopg_target=1.0,
        peer_target=1.2,
    )
    ctx.record(NAME, {"users": users, **figures})
    return rows

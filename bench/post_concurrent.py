"""Scenario 2: posts from 4 processes (random users and one hot user; the service, plain psycopg
and django-hordak, interleaved) and from 16 (the service and psycopg)."""

from __future__ import annotations

from bench.common import create_users, reset
from bench.posts import Peer, compare
from bench.report import Context, Row

NAME = "post_concurrent"


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    rounds, seconds = (2, 0.3) if ctx.smoke else (8, 1.0)
    levels = (4,) if ctx.smoke else (4, 16)
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    hot = [ids[0]]
    peer = Peer.prepare(ctx.url, 50 if ctx.smoke else 1_000)
    print(f"  {users} users; {rounds} rounds of {seconds:g} s slices per side")
    rows: list[Row] = []
    figures: dict[str, object] = {"users": users}
    for processes in levels:
        for kind, pool in (("random users", ids), ("hot user", hot)):
            # The peer's hot case is its hot pair: every transfer from one account to another.
            accounts = None
            if peer is not None and processes == 4:
                accounts = peer.accounts[:2] if kind == "hot user" else peer.accounts
            got, figs = compare(
                ctx,
                label=f"2. post, {processes} procs, {kind}",
                processes=processes,
                user_ids=pool,
                peer_accounts=accounts,
                rounds=rounds if processes == 4 else max(2, rounds // 2),
                seconds=seconds,
                psycopg_target=1.0 if processes == 4 else None,
                peer_target=1.5 if processes == 4 else None,
            )
            rows.extend(got)
            figures[f"{processes}_{kind.replace(' ', '_')}"] = figs
    ctx.record(NAME, figures)
    return rows

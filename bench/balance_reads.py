"""Scenario 3: the balance of a user with 10 entries vs one with 1,000,000, now and at a past time.

Both are one indexed row read (the balance row now; the last entry up to the moment on the
(user, created_at) index), so the two latencies must be about equal whatever the history length.
The reads go through ``core_ledger.selectors.balance_snapshot``, the selector the API uses.
"""

from __future__ import annotations

import datetime as dt

from bench.common import connect, create_history, create_users, median_latency, reset
from bench.peer import run as peer
from bench.report import Context, Row

NAME = "balance_reads"


def run(ctx: Context) -> list[Row]:
    from django.db import connection

    from core_ledger.ledger import registry
    from core_ledger.selectors import balance_snapshot

    long_n = 20_000 if ctx.smoke else 1_000_000
    repeat = 300 if ctx.smoke else 3000
    reset(ctx.url)
    short_user, long_user = create_users(ctx.url, 2, prefix="history", seed=False)
    create_history(ctx.url, short_user, 10)
    create_history(ctx.url, long_user, long_n)
    print(f"  users with 10 and {long_n:,} entries; {repeat} reads each")
    ledger = registry.get("alpha")
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=15)  # the middle of both histories
    figures: dict[str, object] = {"long_entries": long_n}
    rows = []
    for what, moment in (("now", None), ("at a past time", at)):
        got = {}
        for label, user in (("10", short_user), (f"{long_n:,}", long_user)):
            p50, p99 = median_latency(
                lambda u=user, m=moment: balance_snapshot(ledger=ledger, user_id=u, at=m), repeat
            )
            got[label] = (p50, p99)
            print(f"  balance {what:<15} {label:>10} entries: p50 {p50:.3f} ms  p99 {p99:.3f} ms")
        (short_p50, short_p99), (long_p50, long_p99) = got.values()
        figures[what.replace(" ", "_")] = {
            "short_p50_ms": short_p50,
            "short_p99_ms": short_p99,
            "long_p50_ms": long_p50,
            "long_p99_ms": long_p99,
        }
        rows.append(
            Row(
                f"3. balance {what}, {long_n:,} vs 10 entries",
                "p50 ms",
                long_p50,
                short_p50,
                max_ratio=1.5,
                detail=f"p99 {long_p99:.3f} vs {short_p99:.3f} ms",
            )
        )
    rows.extend(_peer_rows(ctx, long_n, figures))
    connection.close()
    with connect(ctx.url) as conn:
        plan = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT balance_after, created_at "
            "FROM app_alpha_entry WHERE user_id = %s AND created_at <= %s "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            [long_user, at],
        ).fetchall()
    figures["plan_at"] = [r[0] for r in plan]
    print("  EXPLAIN ANALYZE (balance at, long history):")
    for line in figures["plan_at"]:  # type: ignore[attr-defined]
        print("    " + line)
    ctx.record(NAME, figures)
    return rows


def _peer_rows(ctx: Context, long_n: int, figures: dict[str, object]) -> list[Row]:
    """django-hordak's ``Account.get_balance()`` for an account with 10 and ``long_n`` legs (its
    balance is a sum over the legs), against the project's read at ``long_n`` entries."""
    if not peer.available():
        print("  (peer not installed: run `make bench` to install bench/peer/requirements.txt)")
        return []
    peer.ensure_database(ctx.url)
    peer.setup(ctx.url, 2)
    accounts = peer.command(ctx.url, "history", "--legs", str(long_n))
    repeat = 50 if ctx.smoke else 30
    got = {
        label: peer.command(
            ctx.url, "balance", "--account", str(accounts[label]), "--repeat", str(r)
        )
        for label, r in (("short", repeat * 10), ("long", repeat))
    }
    for label, legs in (("short", 10), ("long", long_n)):
        print(
            f"  {peer.NAME} get_balance, {legs:>9,} legs: p50 {got[label]['p50_ms']:.3f} ms  "
            f"p99 {got[label]['p99_ms']:.3f} ms"
        )
    project = figures["now"]
    assert isinstance(project, dict)
    figures["peer"] = got
    return [
        Row(
            f"3. balance now, {long_n:,} entries vs {peer.NAME} at {long_n:,} legs",
            "p50 ms",
            project["long_p50_ms"],
            got["long"]["p50_ms"],
            max_ratio=0.01,
            detail=f"peer at 10 legs: {got['short']['p50_ms']:.3f} ms",
        )
    ]

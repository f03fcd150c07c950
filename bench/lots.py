"""Scenario: expiring credits. A spend by a user without lots (the plain post), a spend that
draws from three lots, and ``ledger_expire`` over 100,000 expired lots (rate and peak RSS).

Targets (issue "Expiring credits"): the 3-lot spend at >= 0.7x the plain spend measured in the
same run; ``ledger_expire`` at >= 10,000 lots/s with flat memory (100,000 lots against 10,000).
The plain spend's own figure is scenario 1's; its ratio to the psycopg baseline there is what
"stays within 10% of today's spend" is judged by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import (
    BALANCE_TABLE,
    ENTRY_TABLE,
    LOT_TABLE,
    SEED_BALANCE,
    WorkerFactory,
    analyze,
    connect,
    create_users,
    reset,
)
from bench.interleave import ForkedSide, pair, spread_text
from bench.report import Context, Row

NAME = "lots"


def add_lots(url: str, user_ids: list[int], per_user: int, *, expired: bool) -> None:
    """Give each user ``per_user`` lots of 1 credit (set-based; as the service would write them:
    the entries' balance_after chain, the lots, and the balance row's lot_credits/next_expiry)."""
    when = "now() - interval '1 hour'" if expired else "now() + interval '30 days'"
    with connect(url) as conn:
        conn.execute(
            f"INSERT INTO {ENTRY_TABLE} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day, expires_at) "
            f"SELECT u, 'CREDIT_ADD', 1, {SEED_BALANCE} + k, '', 'bench lot', '{{}}'::jsonb, now(), "
            f"(now() AT TIME ZONE 'UTC')::date, {when} + k * interval '1 second' "
            "FROM unnest(%s::bigint[]) AS u, generate_series(1, %s) AS k ORDER BY u, k",
            [user_ids, per_user],
        )
        conn.execute(
            f"INSERT INTO {LOT_TABLE} (entry_id, user_id, amount, remaining, expires_at) "
            f"SELECT id, user_id, 1, 1, expires_at FROM {ENTRY_TABLE} "
            "WHERE expires_at IS NOT NULL AND user_id = ANY(%s::bigint[])",
            [user_ids],
        )
        conn.execute(
            f"UPDATE {BALANCE_TABLE} b SET balance = b.balance + %s, lot_credits = %s, "
            # remaining > 0: the partial (user, expires_at) index answers it per user.
            f"next_expiry = (SELECT min(expires_at) FROM {LOT_TABLE} l "
            "WHERE l.user_id = b.user_id AND l.remaining > 0) "
            "WHERE b.user_id = ANY(%s::bigint[])",
            [per_user, per_user, user_ids],
        )
    analyze(url)


def spend_each_once(user_ids: list[int], amount: int, processes: int = 1) -> WorkerFactory:
    """``entry_post`` of CREDIT_SPEND ``amount``, each of ``processes`` workers walking its own
    share of the users once (a user met again would have no lot left to draw: an error, so a
    run too long for its users shows in the error count instead of measuring plain spends)."""

    def factory(index: int) -> Callable[[Any], None]:
        from core_ledger.ledger import registry
        from core_ledger.services import entry_post

        ledger = registry.get("alpha")
        mine = iter(user_ids[index::processes])

        def op(rng: Any) -> None:
            user_id = next(mine)
            entry_post(
                ledger=ledger,
                user_id=user_id,
                operation=ledger.operation("CREDIT_SPEND"),
                amount=amount,
            )

        return op

    return factory


def run(ctx: Context) -> list[Row]:
    rounds, seconds = (2, 0.5) if ctx.smoke else (8, 1.0)
    # Enough users that no one is spent from twice: each side posts about rounds x seconds x
    # 2,000/s at most.
    users = 2_000 if ctx.smoke else 24_000
    reset(ctx.url)
    plain_ids = create_users(ctx.url, users, prefix="plain")
    lot_ids = create_users(ctx.url, users, prefix="lots")
    # Three lots of 1 credit each: every spend of 3 draws from all three (soonest first); each
    # user is spent from once (a second spend would find no lot).
    add_lots(ctx.url, lot_ids, 3, expired=False)
    print(
        f"  {users} users without lots, {users} with 3 lots each; one process; "
        f"{rounds} rounds of {seconds:g} s slices per side, interleaved"
    )
    three, plain = pair(
        "spend drawing 3 lots vs plain spend",
        lambda: ForkedSide(spend_each_once(lot_ids, 3), 1),
        lambda: ForkedSide(spend_each_once(plain_ids, 3), 1),
        rounds=rounds,
        seconds=seconds,
    )
    if three.errors or plain.errors:
        raise RuntimeError(
            f"lots scenario ran out of users ({three.errors} / {plain.errors} errors): "
            "raise the users per side"
        )
    rows = [
        Row(
            "lots: spend drawing 3 lots vs plain spend",
            "entries/s",
            three.median,
            plain.median,
            target=0.7,
            spread=spread_text(three, plain),
            detail=f"p50 {three.pct(50):.2f} ms vs {plain.pct(50):.2f} ms",
        )
    ]
    expire_small, rss_small = _expire(ctx, 1_000 if ctx.smoke else 10_000)
    expire_big, rss_big = _expire(ctx, 10_000 if ctx.smoke else 100_000)
    rows.append(
        Row(
            "lots: ledger_expire, 100,000 expired lots",
            "lots/s",
            expire_big,
            10_000,
            target=1.0,
            detail=f"peak RSS {rss_big:.1f} MB vs {rss_small:.1f} MB at a tenth",
            extra_ok=rss_big <= rss_small * 1.25,
            extra_target="RSS flat (<= 1.25x)",
        )
    )
    ctx.record(
        NAME,
        {
            "users": users,
            "plain": plain.summary(),
            "three_lots": three.summary(),
            "expire_lots_per_s": expire_big,
            "expire_rss_mb": [rss_small, rss_big],
            "expire_small_lots_per_s": expire_small,
        },
    )
    return rows


def _expire(ctx: Context, lots: int) -> tuple[float, float]:
    """``ledger_expire`` over ``lots`` expired lots (10 per user), in a child process:
    (lots/s, peak RSS in MB), from the child's own timing (bench/command.py)."""
    from bench.bulk_grant import run_command

    reset(ctx.url)
    ids = create_users(ctx.url, lots // 10, prefix="expire")
    add_lots(ctx.url, ids, 10, expired=True)
    child = run_command(ctx.url, ["ledger_expire", "--ledger", "alpha"])
    print(
        f"  ledger_expire {lots:,} lots: {child.seconds:.2f} s, peak RSS {child.max_rss_mb:.1f} MB"
    )
    with connect(ctx.url) as conn:
        left = conn.execute(
            f"SELECT count(*) FROM {LOT_TABLE} WHERE remaining > 0 AND expires_at <= now()"
        ).fetchone()
    assert left is not None and left[0] == 0, f"{left} expired lots still hold credits"
    return lots / child.seconds, child.max_rss_mb

"""Scenario: holds. Place + capture (two transactions) against a plain spend (one), from one
process and from four, on random users of a large set; the two sides take turns in 1 s slices
(``bench.interleave``), each figure the median of its slices.

Targets (issue "Holds"): place + capture at >= 0.5x the plain spend measured in the same run, at
1 and at 4 processes. "A spend by a user with no holds stays within 10% of today's spend" is
judged by scenario 1's figure (post_single, its ratio to the psycopg baseline), which runs the
same spend path with its one extra condition on the balance row (``balance - held``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import WorkerFactory, create_users, reset
from bench.interleave import ForkedSide, pair, spread_text
from bench.report import Context, Row

NAME = "holds"


def spend(user_ids: list[int]) -> WorkerFactory:
    """``entry_post`` of CREDIT_SPEND 1 for a random user: the plain spend."""

    def factory(index: int) -> Callable[[Any], None]:
        from core_ledger.ledger import registry
        from core_ledger.services import entry_post

        ledger = registry.get("alpha")
        operation = ledger.operation("CREDIT_SPEND")

        def op(rng: Any) -> None:
            entry_post(ledger=ledger, user_id=rng.choice(user_ids), operation=operation, amount=1)

        return op

    return factory


def place_and_capture(user_ids: list[int]) -> WorkerFactory:
    """``hold_place`` of CREDIT_SPEND 2, then ``hold_capture`` of 1 (the rest released): one
    operation is the pair, as a game reserving an entry fee and charging it."""

    def factory(index: int) -> Callable[[Any], None]:
        from core_ledger.ledger import registry
        from core_ledger.services import hold_capture, hold_place

        ledger = registry.get("alpha")
        operation = ledger.operation("CREDIT_SPEND")

        def op(rng: Any) -> None:
            hold = hold_place(
                ledger=ledger, user_id=rng.choice(user_ids), operation=operation, amount=2
            ).hold
            hold_capture(ledger=ledger, hold_id=hold.pk, amount=1)

        return op

    return factory


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    rounds, seconds = (2, 0.5) if ctx.smoke else (8, 1.0)
    reset(ctx.url)
    ids = create_users(ctx.url, users, prefix="holds")
    print(f"  {users} users; {rounds} rounds of {seconds:g} s slices per side, interleaved")
    rows: list[Row] = []
    figures: dict[str, Any] = {"users": users}
    for processes in (1, 4):
        pairs, plain = pair(
            f"{processes} process(es), place + capture vs spend",
            lambda n=processes: ForkedSide(place_and_capture(ids), n),
            lambda n=processes: ForkedSide(spend(ids), n),
            rounds=rounds,
            seconds=seconds,
        )
        rows.append(
            Row(
                f"holds: place + capture vs spend, {processes} process(es)",
                "pairs/s vs spends/s",
                pairs.median,
                plain.median,
                target=0.5,
                spread=spread_text(pairs, plain),
                detail=f"p50 {pairs.pct(50):.2f} ms vs {plain.pct(50):.2f} ms",
            )
        )
        figures[f"spend_{processes}"] = plain.summary()
        figures[f"place_capture_{processes}"] = pairs.summary()
    ctx.record(NAME, figures)
    return rows

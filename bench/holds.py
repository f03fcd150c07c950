"""Scenario: holds. Place + capture (two transactions) against a plain spend (one), from one
process and from four, on random users of a large set.

Targets (issue "Holds"): place + capture at >= 0.5x the plain spend measured in the same run, at
1 and at 4 processes. "A spend by a user with no holds stays within 10% of today's spend" is
judged by scenario 1's figure (post_single, its ratio to the psycopg baseline), which runs the
same spend path with its one extra condition on the balance row (``balance - held``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import WorkerFactory, create_users, reset, timed_pool
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
    seconds = 1.0 if ctx.smoke else 6.0
    reset(ctx.url)
    ids = create_users(ctx.url, users, prefix="holds")
    print(f"  {users} users; {seconds:g} s per run")
    rows: list[Row] = []
    figures: dict[str, Any] = {"users": users}
    for processes in (1, 4):
        plain = timed_pool(spend(ids), processes, seconds)
        ctx.show(f"spend, {processes} process(es)", plain)
        pair = timed_pool(place_and_capture(ids), processes, seconds)
        ctx.show(f"place + capture, {processes} process(es)", pair)
        rows.append(
            Row(
                f"holds: place + capture vs spend, {processes} process(es)",
                "pairs/s vs spends/s",
                pair.rate,
                plain.rate,
                target=0.5,
                detail=f"p50 {pair.pct(50):.2f} ms vs {plain.pct(50):.2f} ms",
            )
        )
        figures[f"spend_{processes}"] = plain.summary()
        figures[f"place_capture_{processes}"] = pair.summary()
    ctx.record(NAME, figures)
    return rows

"""Concurrency under real processes: several OS processes, each with its own connection (or
HTTP client against gunicorn with several workers), hammer a few hot users with credits,
spends, reversals and retried idempotent requests; then every acknowledged write is in the
database exactly as acknowledged, nothing else was written, refused keys left nothing, and
the invariants hold."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.db import connection

from core_ledger.ledger import registry
from core_ledger.testing import api_token
from core_ledger.tests.reliability.helpers import (
    GunicornServer,
    fast_user,
    snapshot,
    time_order_violations,
)
from core_ledger.tests.reliability.workers import Plan, run_processes, verify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROCESSES = int(os.environ.get("RELIABILITY_PROCESSES", "4"))
SECONDS = float(os.environ.get("RELIABILITY_SECONDS", "6"))


def _check_and_report(figures: Any, name: str, result: dict[str, Any], users: list[int]) -> None:
    for ledger in registry:
        assert time_order_violations(ledger, users) == []
    for key, value in result.items():
        figures(f"{name} {key}", value)
    print(f"{name}: {result}")
    # The run exercised what it claims to: writes, refusals of overdrafts, replays.
    assert result["acknowledged"] > 50, result
    assert result["replays"] > 0, result
    assert result["refusals"].get("insufficient_credits", 0) > 0, result


def test_processes_on_hot_users_lose_nothing_and_invent_nothing(figures: Any) -> None:
    users = [fast_user().pk for _ in range(3)]
    baseline = snapshot(users).last_ids
    seed = int.from_bytes(os.urandom(4), "big")
    plans = [
        Plan(
            worker=i,
            seed=seed + i,
            seconds=SECONDS,
            ledgers=registry.labels(),
            users=users,
            db_name=connection.settings_dict["NAME"],
            min_operations=60,
        )
        for i in range(PROCESSES)
    ]
    reports = run_processes(plans=plans, transport_name="service", timeout=3 * SECONDS)
    result = verify(reports=reports, users=users, baseline=baseline)
    result["seed"] = seed
    _check_and_report(figures, "processes (service)", result, users)
    # Processes sent one key with different amounts: the losers were refused, not posted.
    assert result["refusals"].get("idempotency_key_reused", 0) > 0, result


def test_gunicorn_workers_under_concurrent_clients_lose_nothing(figures: Any) -> None:
    users = [fast_user().pk for _ in range(3)]
    staff = fast_user(staff=True)
    tokens = {u: api_token(u) for u in users}
    staff_token = api_token(staff)
    baseline = snapshot(users).last_ids
    seed = int.from_bytes(os.urandom(4), "big")
    with GunicornServer(connection.settings_dict["NAME"], workers=3) as server:
        plans = [
            Plan(
                worker=i,
                seed=seed + i,
                seconds=SECONDS,
                ledgers=registry.labels(),
                users=users,
                base_url=server.base_url,
                tokens=tokens,
                staff_token=staff_token,
                min_operations=60,
            )
            for i in range(3)
        ]
        reports = run_processes(plans=plans, transport_name="http", timeout=3 * SECONDS)
        assert "Traceback" not in server.output(), server.output()
    result = verify(reports=reports, users=users, baseline=baseline)
    result["seed"] = seed
    _check_and_report(figures, "processes (HTTP, gunicorn -w 3)", result, users)

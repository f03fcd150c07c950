"""``python -m bench.soak [--seconds 60] [--processes 8] [--users 5] [--http]``: the long run of
the reliability suite's process-concurrency test.

Several OS processes, each with its own connection (and with ``--http``, HTTP clients against
``gunicorn`` with several workers on a loopback port), post random credits, spends, reversals
and retried idempotent requests on a few hot users for the given time. Then every acknowledged
write must be in the database exactly as acknowledged, nothing unacknowledged may have been
written, keys that were only ever refused must have left nothing, and ``ledger_check`` must hold.
Runs on its own database (``soak_shared_ledger``, created and migrated on first use), never on
the development, a test or the other benchmarks' database (they TRUNCATE theirs). Prints its figures; exit status 1 when a check fails.

The load itself is ``core_ledger/tests/reliability/workers.py`` (the test runs it for seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

SOAK_DB = "soak_shared_ledger"


def _ensure_database(url: str) -> None:
    """Create and migrate the soak database (reused between runs; nothing is ever truncated)."""
    import subprocess

    import psycopg

    from bench.common import BASE_DIR, bench_env, with_database

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [SOAK_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{SOAK_DB}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=bench_env(url),
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="Duration of each run.")
    parser.add_argument("--processes", type=int, default=8, help="Client processes.")
    parser.add_argument("--users", type=int, default=5, help="Hot users shared by all of them.")
    parser.add_argument(
        "--http", action="store_true", help="Also run the load over HTTP against gunicorn."
    )
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    args = parser.parse_args(argv)

    from bench.common import bench_env, source_url, with_database

    url = with_database(source_url(), SOAK_DB)
    print(f"Soak on its own database {SOAK_DB}", flush=True)
    _ensure_database(url)
    os.environ.update(bench_env(url))
    import django

    django.setup()

    from django.contrib.auth import get_user_model

    from core_ledger.ledger import registry
    from core_ledger.services.operators import operator_grant
    from core_ledger.testing import api_token
    from core_ledger.tests.reliability.helpers import (
        GunicornServer,
        snapshot,
        time_order_violations,
    )
    from core_ledger.tests.reliability.workers import Plan, run_processes, verify

    failed = False
    transports = ["service", *(["http"] if args.http else [])]
    for transport in transports:
        run_id = uuid.uuid4().hex[:8]
        user_model = get_user_model()
        users = [
            user_model.objects.create(username=f"soak-{run_id}-{i}").pk for i in range(args.users)
        ]
        staff = user_model.objects.create(username=f"soak-{run_id}-staff", is_staff=True)
        for ledger in registry:
            operator_grant(ledger=ledger, user=staff)
        tokens = {u: api_token(u) for u in users}
        staff_token = api_token(staff)
        baseline = snapshot(users).last_ids
        seed = int.from_bytes(os.urandom(4), "big")

        common: dict[str, Any] = {
            "seconds": args.seconds,
            "ledgers": registry.labels(),
            "users": users,
            "db_name": SOAK_DB,
            "tokens": tokens,
            "staff_token": staff_token,
        }

        print(
            f"\n== {transport}: {args.processes} processes x {args.seconds:.0f} s on "
            f"{args.users} hot users (seed {seed}) ==",
            flush=True,
        )
        started = time.perf_counter()
        if transport == "http":
            with GunicornServer(SOAK_DB, workers=args.gunicorn_workers) as server:
                plans = [
                    Plan(worker=i, seed=seed + i, base_url=server.base_url, **common)
                    for i in range(args.processes)
                ]
                reports = run_processes(plans=plans, transport_name="http", timeout=args.seconds)
        else:
            plans = [Plan(worker=i, seed=seed + i, **common) for i in range(args.processes)]
            reports = run_processes(plans=plans, transport_name="service", timeout=args.seconds)
        elapsed = time.perf_counter() - started
        try:
            figures: dict[str, Any] = verify(reports=reports, users=users, baseline=baseline)
            for ledger in registry:
                bad = time_order_violations(ledger, users)
                assert not bad, f"[{ledger.label}] created_at out of id order: {bad[:5]}"
        except AssertionError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        figures["operations/s"] = round(figures["operations"] / max(args.seconds, 1e-9), 1)
        figures["wall seconds"] = round(elapsed, 1)
        for key, value in figures.items():
            print(f"  {key}: {value}")
        print(
            "  checks: acknowledged all stored, nothing unacknowledged, refused keys empty, "
            "ledger_check clean, created_at in id order"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

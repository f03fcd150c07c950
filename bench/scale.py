"""``python -m bench.scale [--seconds N]``: the figures of README "Scaling out", measured on the
topology of ``ledger_project.topology`` (its own primary, streaming replica and PgBouncer).

Each run: posts/s through the API onto the primary (persistent connections, Django's psycopg
pool, PgBouncer in transaction mode), and reads/s of the staff balances list with and without the
replica. Short on purpose (a few seconds per figure): this machine is shared. Separate from
``make bench``: it starts servers of its own and needs none of the bench database.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ledger_project.topology import AppServer, PgBouncer, manage, seed, start_databases

LABEL = "alpha"


def _rate(server: AppServer, seconds: float, clients: int, request: Any) -> tuple[float, int, int]:
    """Requests/s that ``clients`` threads get through ``server`` in ``seconds``."""
    done: list[int] = []
    errors: list[int] = []
    stop = threading.Event()

    def run(n: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                status = request(client, n, i)
                (done if status < 400 else errors).append(status)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - started
    return len(done) / elapsed, len(done), len(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="sl-bench-scale-"))
    root.chmod(0o755)
    primary, replica = start_databases(root / "pg")
    assert replica is not None
    bouncer: PgBouncer | None = None
    results: list[tuple[str, float, int, int]] = []
    try:
        manage({"DATABASE_URL": primary.url}, "migrate", "--noinput", "-v0")
        accounts = seed({"DATABASE_URL": primary.url}, users=args.clients)
        # Enough rows that the balances list is a real read: 2,000 users' balances.
        manage({"DATABASE_URL": primary.url}, "shell", "-c", _MANY_USERS)
        operator = {"Authorization": f"Token {accounts['operator']['token']}"}
        users = accounts["users"]

        def post(client: httpx.Client, n: int, i: int) -> int:
            body = {"user": users[n]["id"], "operation": "CREDIT_ADD", "amount": 1}
            return client.post(f"/api/{LABEL}/entries/", json=body, headers=operator).status_code

        def read(client: httpx.Client, n: int, i: int) -> int:
            return client.get(f"/api/{LABEL}/balances/?page_size=100", headers=operator).status_code

        base = {
            "DATABASE_URL": primary.url,
            "API_THROTTLE_USER": "100000000/min",
            "API_THROTTLE_ANON": "100000000/min",
            "LOG_LEVEL": "WARNING",
        }
        bouncer = PgBouncer(root / "pgbouncer", primary.port)
        bouncer.start()
        setups: list[tuple[str, dict[str, str], Any]] = [
            ("posts/s, CONN_MAX_AGE=60", base, post),
            ("posts/s, DATABASE_POOL=1", {**base, "DATABASE_POOL": "1"}, post),
            (
                "posts/s, PgBouncer (transaction mode)",
                {**base, "DATABASE_URL": bouncer.url, "DATABASE_PGBOUNCER": "1"},
                post,
            ),
            ("balances list reads/s, primary only", base, read),
            (
                "balances list reads/s, with the replica",
                {**base, "DATABASE_REPLICA_URLS": replica.url},
                read,
            ),
        ]
        for name, env, request in setups:
            server = AppServer(env, root / "logs" / f"{len(results)}.log", workers=args.workers)
            server.start()
            try:
                _rate(server, 1.0, args.clients, request)  # warm-up
                rate, ok, failed = _rate(server, args.seconds, args.clients, request)
            finally:
                server.stop()
            results.append((name, rate, ok, failed))
            print(f"{name:45s} {rate:8.0f}   ({ok} ok, {failed} failed)", flush=True)
        manage({"DATABASE_URL": primary.url}, "ledger_verify")
    finally:
        if bouncer is not None:
            bouncer.stop()
        replica.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(failed == 0 for *_, failed in results) else 1


_MANY_USERS = """
from django.contrib.auth import get_user_model
from django.utils import timezone
from core_ledger.ledger import registry
User = get_user_model()
users = User.objects.bulk_create([User(username=f"bulk{i}") for i in range(2000)])
ledger = registry.get("alpha")
ledger.balance_model.objects.bulk_create(
    [ledger.balance_model(user_id=u.pk, balance=0, updated_at=timezone.now()) for u in users], ignore_conflicts=True
)
"""

if __name__ == "__main__":
    sys.exit(main())

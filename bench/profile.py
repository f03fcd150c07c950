"""``python -m bench.profile {service,api} [-n N]``: where the time of one post goes.

Runs N posts in this process on the bench database (production settings, DEBUG off) under
pyinstrument and prints the call tree, after listing the SQL statements of one post:

- ``service``: ``core_ledger.services.entry_post`` of CREDIT_SPEND as the system;
- ``api``: ``POST /api/alpha/entries/`` through Django's test client with a user's token (the
  whole request: middleware, authentication, serializers, the service).

Needs pyinstrument (requirements-dev.txt). For a live gunicorn worker, use py-spy instead:
``py-spy top --pid <worker pid>`` or ``py-spy record -o profile.svg --pid <worker pid>``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from bench.common import bench_env, bench_url, create_tokens, create_users, ensure_database, reset

BODY = '{"operation": "CREDIT_SPEND", "amount": 1}'


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", choices=("service", "api"))
    parser.add_argument("-n", type=int, default=500, help="Posts to profile (default 500).")
    args = parser.parse_args()
    url = bench_url()
    ensure_database(url)
    os.environ.update(bench_env(url))
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from core_ledger.ledger import registry
    from core_ledger.services import entry_post

    reset(url)
    ids = create_users(url, 100)
    tokens = create_tokens(url, ids)
    ledger = registry.get("alpha")
    client = Client(HTTP_HOST="127.0.0.1")

    def service(i: int) -> None:
        entry_post(ledger=ledger, user_id=ids[i % 100], operation="CREDIT_SPEND", amount=1)

    def api(i: int) -> None:
        response = client.post(
            "/api/alpha/entries/",
            data=BODY,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {tokens[i % 100]}",
        )
        assert response.status_code == 201, response.content

    post: Callable[[int], None] = service if args.target == "service" else api
    for i in range(20):
        post(i)
    with CaptureQueriesContext(connection) as queries:
        post(0)
    print(f"SQL of one post ({len(queries.captured_queries)} statements):")
    for q in queries.captured_queries:
        print(f"  {q['sql'][:150]}")
    t0 = time.perf_counter()
    for i in range(args.n):
        post(i)
    print(f"\n{(time.perf_counter() - t0) / args.n * 1000:.2f} ms per post, unprofiled\n")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for i in range(args.n):
        post(i)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False))


if __name__ == "__main__":
    main()

"""What every scenario shares: the bench database, set-based data set-up, timed worker pools, stats.

The benchmarks never touch the development database (``shared_ledger``) or a test database:
they run in their own database, ``bench_shared_ledger``, on the same server as ``DATABASE_URL``.
That database is bench-only, so it carries the database-level setting
``shared_ledger.allow_truncate = on`` (the one the test set-up uses): the append-only trigger
then lets ``TRUNCATE`` through, which is how a scenario starts from empty tables.
UPDATE and DELETE of entries stay refused there too.

Data is set up with set-based SQL (``INSERT … SELECT generate_series``), never through the
service: 100,000 users or a 1,000,000-entry history take seconds, and the rows are exactly what
the service would have written (a consistent ``balance_after`` chain and the matching balance
row), so ``ledger_check`` holds on the bench database after every scenario.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

BASE_DIR = Path(__file__).resolve().parent.parent
# BENCH_DATABASE picks another name (several checkouts benching on one server).
BENCH_DB = os.environ.get("BENCH_DATABASE", "bench_shared_ledger")
ALLOW_TRUNCATE_SETTING = "shared_ledger.allow_truncate"
ENTRY_TABLE = "app_alpha_entry"
BALANCE_TABLE = "app_alpha_balance"
LOT_TABLE = "app_alpha_lot"
# Every user the bench creates starts with this many alpha credits (one CREDIT_ADD entry), so
# that CREDIT_SPEND of 1 never runs out during a run.
SEED_BALANCE = 1_000_000_000
# The request timeouts of the project (RequestTimeoutsMiddleware), so both sides run under the same.
PG_OPTIONS = "-c lock_timeout=5000 -c statement_timeout=30000"


def source_url() -> str:
    """The server to bench on: ``DATABASE_URL``, else the embedded development server."""
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        sys.path.insert(0, str(BASE_DIR))
        from ledger_project.devdb import running_url, start

        url = running_url() or start()
    return url


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def libpq_url(url: str) -> str:
    """django-environ accepts ``postgresql://`` and ``postgres://``; libpq takes both too."""
    return url


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), options=PG_OPTIONS, **kwargs)


def bench_url() -> str:
    return with_database(source_url(), BENCH_DB)


def bench_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a bench process: production settings (DEBUG off) on the bench db."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="bench.settings",
        DEBUG="0",
        SECRET_KEY=env.get("SECRET_KEY") or "bench-only-not-secret-" + "x" * 40,
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        API_THROTTLE_USER="100000000/min",
        API_THROTTLE_ANON="100000000/min",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE_DIR),
    )
    env.update(extra)
    return env


def ensure_database(url: str) -> None:
    """Create and migrate the bench database (reused between runs)."""
    admin_url = with_database(url, "postgres")
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        # Bench-only: lets the append-only trigger pass TRUNCATE here (see module docstring).
        conn.execute(f"ALTER DATABASE \"{BENCH_DB}\" SET {ALLOW_TRUNCATE_SETTING} = 'on'")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=bench_env(url),
        check=True,
    )


def server_version(url: str) -> str:
    with connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0])


# --- data set-up (set-based) -------------------------------------------------------------------


def reset(url: str) -> None:
    """Empty every table the bench writes (users, tokens, both ledgers, events)."""
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE app_alpha_entry, app_alpha_balance, app_beta_entry, app_beta_balance, "
            # The entries' events go with them (ledger_check counts one per entry).
            "core_ledger_event, core_ledger_api_token, auth_user RESTART IDENTITY CASCADE"
        )


def create_users(url: str, count: int, *, prefix: str = "bench", seed: bool = True) -> list[int]:
    """``count`` users (no signals: no signup credit), each seeded with SEED_BALANCE credits."""
    with connect(url) as conn:
        rows = conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "SELECT '!', false, %s || '-' || g, '', '', '', false, true, now() "
            "FROM generate_series(1, %s) AS g RETURNING id",
            [prefix, count],
        ).fetchall()
        ids = sorted(r[0] for r in rows)
        if seed:
            conn.execute(
                f"INSERT INTO {ENTRY_TABLE} (user_id, operation, amount, balance_after, "
                "request_fingerprint, description, metadata, created_at, day) "
                "SELECT u, 'CREDIT_ADD', %s, %s, '', 'bench seed', '{}'::jsonb, now(), "
                "(now() AT TIME ZONE 'UTC')::date FROM unnest(%s::bigint[]) AS u",
                [SEED_BALANCE, SEED_BALANCE, ids],
            )
            conn.execute(
                f"INSERT INTO {BALANCE_TABLE} (user_id, balance, updated_at) "
                "SELECT u, %s, now() FROM unnest(%s::bigint[]) AS u",
                [SEED_BALANCE, ids],
            )
    analyze(url)
    return ids


def create_history(url: str, user_id: int, count: int, *, span_seconds: int = 86_400 * 30) -> None:
    """Give ``user_id`` (who has no entries yet) a ``count``-entry history spread over the past.

    Amounts vary (1 to 5 credits, every 7th a debit of 1); ``balance_after`` is their running sum
    (a window function), so the chain is exactly what posting them one by one would have made.
    Set-up, not a measure: no statement timeout (a million rows and their events in one statement
    take about half a minute on 2 cores).
    """
    with connect(url) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(
            f"INSERT INTO {ENTRY_TABLE} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day) "
            "SELECT %(u)s, CASE WHEN amt > 0 THEN 'CREDIT_ADD' ELSE 'CREDIT_SPEND' END, amt, "
            "sum(amt) OVER (ORDER BY g), '', 'bench history', '{}'::jsonb, ts, "
            "(ts AT TIME ZONE 'UTC')::date "
            "FROM (SELECT g, CASE WHEN g %% 7 = 0 AND g > 1 THEN -1 ELSE 1 + g %% 5 END AS amt, "
            "now() - make_interval(secs => %(span)s::float8 * (%(n)s - g) / %(n)s) - "
            "interval '1 second' AS ts FROM generate_series(1, %(n)s) AS g) s ORDER BY g",
            {"u": user_id, "n": count, "span": span_seconds},
        )
        conn.execute(
            f"INSERT INTO {BALANCE_TABLE} (user_id, balance, updated_at) "
            f"SELECT user_id, sum(amount), max(created_at) FROM {ENTRY_TABLE} "
            "WHERE user_id = %s GROUP BY user_id",
            [user_id],
        )
    analyze(url)


def create_tokens(url: str, user_ids: Sequence[int]) -> list[str]:
    """An API token per user, in the order of ``user_ids``: the table holds only each token's
    SHA-256 digest, as ``core_ledger.services.tokens.token_create`` stores it; valid for a day."""
    tokens = [secrets.token_urlsafe(32) for _ in user_ids]
    digests = [hashlib.sha256(token.encode()).hexdigest() for token in tokens]
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO core_ledger_api_token (digest, user_id, created, expiry) "
            "SELECT d, u, now(), now() + interval '1 day' "
            "FROM unnest(%s::text[], %s::bigint[]) AS t(d, u)",
            [digests, list(user_ids)],
        )
    return tokens


def analyze(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        conn.execute(f"ANALYZE auth_user, {ENTRY_TABLE}, {BALANCE_TABLE}, {LOT_TABLE}")


def ledger_problems(url: str) -> list[str]:
    """Run the project's invariant checker on the bench database (in a child process)."""
    code = (
        "import django; django.setup(); from core_ledger.ledger import registry; "
        "from core_ledger.selectors import ledger_check; "
        "print('\\n'.join(str(d) for l in registry for d in ledger_check(ledger=l)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=bench_env(url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    """The outcome of a timed run: operations done, errors, wall time and per-op latencies (s)."""

    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    # CPU seconds the client processes and their database backends spent (``bench.interleave``
    # slices only; server CPU is None where the backends' /proc is out of reach).
    client_cpu: float = 0.0
    server_cpu: float | None = 0.0

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def cpu_per_op(self) -> tuple[float, float | None]:
        """(client, server) CPU per operation in milliseconds."""
        if not self.ops:
            return 0.0, None
        server = None if self.server_cpu is None else self.server_cpu / self.ops * 1000
        return self.client_cpu / self.ops * 1000, server

    def pct(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in milliseconds."""
        if not self.latencies:
            return 0.0
        data = sorted(self.latencies)
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k] * 1000

    def summary(self) -> dict[str, float]:
        return {
            "ops": self.ops,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.rate, 1),
            "p50_ms": round(self.pct(50), 3),
            "p99_ms": round(self.pct(99), 3),
        }


# The backend pids of connections a worker opened outside Django (psycopg baselines register
# theirs here, in the worker process), for the server CPU a slice used.
BACKEND_PIDS: list[int] = []
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def backend_pids() -> list[int]:
    """This process's database backends: Django's open connections and the registered ones."""
    pids = list(BACKEND_PIDS)
    if "django" in sys.modules:
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            raw = conn.connection
            if raw is not None and hasattr(raw, "info"):
                pids.append(int(raw.info.backend_pid))
    return pids


def server_cpu(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system) the backends ``pids`` have used, from ``/proc/<pid>/stat``
    (the server must run on this machine); None when one cannot be read."""
    if not pids:
        return None
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _CLOCK_TICKS


# A worker factory runs in the child: it sets up (connects, warms up) and returns the operation
# to time; the operation takes the worker's random generator and returns nothing.
WorkerFactory = Callable[[int], Callable[[Any], None]]


def _worker(
    factory: WorkerFactory,
    index: int,
    duration: float,
    barrier: Any,
    results: Any,
) -> None:
    import random

    rng = random.Random(index * 7919 + 1)
    try:
        op = factory(index)
        for _ in range(3):  # warm-up: connection, caches, prepared statements
            op(rng)
    except BaseException as exc:  # report set-up failures instead of hanging the barrier
        barrier.abort()
        results.put(("error", index, repr(exc)))
        return
    barrier.wait()
    ops, errors, seconds, latencies = run_for(op, rng, duration)
    results.put(("ok", index, ops, errors, seconds, latencies))


def run_for(
    op: Callable[[Any], None], rng: Any, duration: float
) -> tuple[int, int, float, list[float]]:
    """Call ``op(rng)`` back to back for ``duration`` seconds: (ops, errors, seconds, latencies)."""
    latencies: list[float] = []
    ops = errors = 0
    start = now = time.perf_counter()
    end = start + duration
    while now < end:
        t0 = now
        try:
            op(rng)
            ops += 1
        except Exception:
            errors += 1
        now = time.perf_counter()
        latencies.append(now - t0)
    return ops, errors, now - start, latencies


def timed_pool(factory: WorkerFactory, processes: int, duration: float) -> Run:
    """Run ``factory``'s operation in ``processes`` forked processes for ``duration`` seconds.

    Each process opens its own connection(s); all start together on a barrier; the rate is the
    total count over the wall time of the slowest process.
    """
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    _close_django_connections()
    procs = [
        ctx.Process(target=_worker, args=(factory, i, duration, barrier, results), daemon=True)
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    run = Run()
    failures = []
    for _ in procs:
        item = results.get(timeout=duration + 120)
        if item[0] == "error":
            failures.append(f"worker {item[1]}: {item[2]}")
            continue
        _, _, ops, errors, seconds, latencies = item
        run.ops += ops
        run.errors += errors
        run.seconds = max(run.seconds, seconds)
        run.latencies.extend(latencies)
    for p in procs:
        p.join(timeout=30)
    if failures:
        raise RuntimeError("benchmark worker failed: " + "; ".join(failures))
    return run


def _close_django_connections() -> None:
    """Forked children must not share the parent's database connection."""
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def median_latency(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(p50, p99) of ``fn``'s latency in ms over ``repeat`` calls, after a short warm-up."""
    for _ in range(min(20, repeat)):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return (
        statistics.median(times) * 1000,
        times[min(len(times) - 1, round(0.99 * (len(times) - 1)))] * 1000,
    )


def half_range(values: Sequence[float]) -> float:
    """Half the range of ``values`` as a fraction of their median (the ± of a spread)."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / 2 / mid if mid else 0.0


def ratio(project: float, baseline: float) -> float | None:
    return round(project / baseline, 3) if baseline else None

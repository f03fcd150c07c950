"""``python -m bench.history``: the admin, verification and export of a ledger that grew for years.

Builds the alpha ledger in its own database (``bench_scale``, same server as ``DATABASE_URL``)
set-based, in two stages, and measures the same things at each:

1. ``--users`` users (default 1,000,000), each with one seed entry: ``--users`` entries;
2. history up to ``--entries`` entries in all (default 10,000,000), round-robin over the users,
   ``balance_after`` in closed form (no window sort), the balance rows moved to match.

At each stage: p50/p95 of the admin pages (Django's test ``Client`` in this process, logged in as
a superuser, ``DEBUG=0`` settings), a full ``ledger_verify`` (entries/s), then 10,000 new entries
(one for each of 10,000 users) and an incremental ``ledger_verify`` of them; with ``--export`` a
``ledger_export`` to /dev/null (rows/s, peak RSS). The slowest query of each admin page is
written with ``EXPLAIN (ANALYZE, BUFFERS)`` to the results file. The figures of both stages are
printed side by side. Bulk loads drop the entry table's secondary indexes, insert with
``session_replication_role = replica`` (no FK trigger per row) and rebuild the indexes after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    ALLOW_TRUNCATE_SETTING,
    BASE_DIR,
    bench_env,
    connect,
    libpq_url,
    server_version,
    source_url,
    with_database,
)

SCALE_DB = "bench_scale"
ENTRY = "app_alpha_entry"
BALANCE = "app_alpha_balance"
SEED = 1_000
NEW_ENTRIES = 10_000
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_ADMIN_P95_MS = 200.0
TARGET_INCREMENTAL_S = 2.0
TARGET_FULL_RATE = 300_000.0


def log(text: str) -> None:
    print(text, flush=True)


# --- the database ------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    admin_url = with_database(url, "postgres")
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [SCALE_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{SCALE_DB}"')
        conn.execute(f"ALTER DATABASE \"{SCALE_DB}\" SET {ALLOW_TRUNCATE_SETTING} = 'on'")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=bench_env(url, DJANGO_SETTINGS_MODULE="bench.history_settings"),
        check=True,
    )


def bulk(url: str) -> psycopg.Connection[Any]:
    """A connection for loading: no statement timeout, big maintenance memory."""
    conn = psycopg.connect(libpq_url(url), autocommit=True)
    conn.execute("SET statement_timeout = 0")
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET work_mem = '256MB'")
    return conn


def reset(url: str) -> None:
    with bulk(url) as conn:
        conn.execute(
            "TRUNCATE core_ledger_event, app_alpha_lot, app_alpha_entry, app_alpha_balance, "
            "app_beta_lot, "
            "app_beta_entry, app_beta_balance, core_ledger_verify_checkpoint, "
            "core_ledger_api_token, django_session, django_admin_log, auth_user "
            "RESTART IDENTITY CASCADE"
        )


def secondary_indexes(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the entry table's indexes that back no constraint."""
    rows = conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        [ENTRY],
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def load(url: str, sql: str, params: dict[str, Any], what: str) -> None:
    """Run one big INSERT … SELECT into the entry table without its secondary indexes."""
    t0 = time.perf_counter()
    with bulk(url) as conn:
        indexes = secondary_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {ENTRY}").fetchone()
        before = int(row[0]) if row else 0
        conn.execute("SET session_replication_role = replica")  # no FK trigger per row
        conn.execute(sql, params)
        conn.execute("SET session_replication_role = DEFAULT")
        # The replica role skipped the entry table's event trigger too: one entry.posted event
        # per new entry, set-based (ledger_verify checks that each entry has one).
        conn.execute(
            "INSERT INTO core_ledger_event (xid, ledger, type, object_id, created_at, data) "
            "SELECT pg_current_xact_id(), 'alpha', 'entry.posted', id, created_at, "
            "jsonb_build_object('balance', jsonb_build_object('balance', balance_after, "
            f"'available', balance_after)) FROM {ENTRY} WHERE id > %s ORDER BY id",
            [before],
        )
        t1 = time.perf_counter()
        log(f"  {what}: inserted in {t1 - t0:.0f} s; rebuilding {len(indexes)} indexes")
        for _, create in indexes:
            conn.execute(create)
        log(f"  indexes rebuilt in {time.perf_counter() - t1:.0f} s")


def vacuum(url: str) -> None:
    t0 = time.perf_counter()
    with bulk(url) as conn:
        conn.execute(f"VACUUM (ANALYZE) {ENTRY}, {BALANCE}, auth_user")
    log(f"  VACUUM ANALYZE in {time.perf_counter() - t0:.0f} s")


def create_users(url: str, users: int) -> None:
    """``users`` users (ids 1..users), each with one seed entry and a balance row, and the
    operator (a superuser, id users + 1) the admin pages are measured as."""
    t0 = time.perf_counter()
    with bulk(url) as conn:
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "SELECT '!', false, 'scale-' || g, '', '', '', false, true, now() "
            "FROM generate_series(1, %s) AS g",
            [users],
        )
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined) "
            "VALUES ('!', true, 'scale-operator', '', '', '', true, true, now())"
        )
    log(f"  {users:,} users in {time.perf_counter() - t0:.0f} s")
    load(
        url,
        f"INSERT INTO {ENTRY} (user_id, operation, amount, balance_after, request_fingerprint, "
        "description, metadata, created_at, day, idempotency_key) "
        "SELECT u, 'CREDIT_ADD', %(seed)s, %(seed)s, '', "
        "CASE WHEN u %% 10007 = 0 THEN 'signup bonus' ELSE 'bench seed' END, '{}'::jsonb, ts, "
        "(ts AT TIME ZONE 'UTC')::date, CASE WHEN u %% 10 = 0 THEN 'seed-' || u END "
        "FROM (SELECT u, now() - interval '366 days' + make_interval(secs => 86000.0 * u / %(n)s)"
        " AS ts FROM generate_series(1, %(n)s) AS u) s",
        {"seed": SEED, "n": users},
        f"{users:,} seed entries",
    )
    with bulk(url) as conn:
        conn.execute(
            f"INSERT INTO {BALANCE} (user_id, balance, updated_at) "
            f"SELECT user_id, balance_after, created_at FROM {ENTRY}"
        )


def grow_history(url: str, users: int, count: int) -> None:
    """``count`` more entries, round-robin over users 1..users: the k-th new entry of a user is
    +2 (k odd) or -1 (k even), so its balance_after is the user's balance + k//2 + 2*(k%2).

    The balance before is known in closed form (the seed, plus 3 for the users the first
    stage's new entries moved), so the insert needs no join and no sort: ids follow g.
    """
    load(
        url,
        f"INSERT INTO {ENTRY} (user_id, operation, amount, balance_after, request_fingerprint, "
        "description, metadata, created_at, day, idempotency_key) "
        "SELECT u, CASE WHEN k %% 2 = 1 THEN 'CREDIT_ADD' ELSE 'CREDIT_SPEND' END, "
        "CASE WHEN k %% 2 = 1 THEN 2 ELSE -1 END, "
        "%(seed)s + CASE WHEN u <= %(moved)s THEN 3 ELSE 0 END + k / 2 + 2 * (k %% 2), '', "
        "CASE WHEN g %% 10007 = 0 THEN 'weekly bonus' ELSE 'bench history' END, '{}'::jsonb, "
        "ts, (ts AT TIME ZONE 'UTC')::date, CASE WHEN g %% 10 = 0 THEN 'h-' || g END "
        "FROM (SELECT g, (g - 1) %% %(users)s + 1 AS u, (g - 1) / %(users)s + 1 AS k, "
        "now() - interval '365 days' + make_interval(secs => 31449600.0 * g / %(n)s) AS ts "
        "FROM generate_series(1::bigint, %(n)s) AS g) s",
        {"users": users, "n": count, "seed": SEED, "moved": min(NEW_ENTRIES, users)},
        f"{count:,} history entries",
    )
    t0 = time.perf_counter()
    with bulk(url) as conn:
        # k = how many of the new entries each user got.
        conn.execute(
            f"UPDATE {BALANCE} SET balance = balance + kk / 2 + 2 * (kk %% 2), "
            "updated_at = now() - interval '1 day' "
            "FROM (SELECT u, %(n)s / %(users)s + CASE WHEN u <= %(n)s %% %(users)s THEN 1 "
            "ELSE 0 END AS kk FROM generate_series(1, %(users)s) AS u) x "
            "WHERE user_id = x.u AND x.kk > 0",
            {"users": users, "n": count},
        )
    log(f"  balances moved in {time.perf_counter() - t0:.0f} s")


def add_new_entries(url: str, count: int) -> int:
    """One CREDIT_ADD of 3 for each of users 1..count, as the service would write it; returns
    the id the entries start after."""
    with bulk(url) as conn:
        row = conn.execute(f"SELECT max(id) FROM {ENTRY}").fetchone()
        before = int(row[0]) if row and row[0] is not None else 0
        conn.execute(
            f"INSERT INTO {ENTRY} (user_id, operation, amount, balance_after, request_fingerprint,"
            " description, metadata, created_at, day) "
            "SELECT user_id, 'CREDIT_ADD', 3, balance + 3, '', 'bench new', '{}'::jsonb, "
            f"clock_timestamp(), (clock_timestamp() AT TIME ZONE 'UTC')::date FROM {BALANCE} "
            "WHERE user_id <= %s ORDER BY user_id",
            [count],
        )
        conn.execute(
            f"UPDATE {BALANCE} SET balance = balance + 3, updated_at = now() WHERE user_id <= %s",
            [count],
        )
    return before


def entry_count(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {ENTRY}").fetchone()
        return int(row[0]) if row else 0


# --- measuring -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


class Admin:
    """Admin pages fetched in this process by Django's test client, as a superuser."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        # No setup_test_environment(): its instrumented template rendering would be measured too.
        self.client = Client()
        operator = get_user_model()._default_manager.get(username="scale-operator")
        self.client.force_login(operator)

    def pages(self, url: str, users: int) -> dict[str, str]:
        from django.urls import reverse

        with connect(url) as conn:
            key_row = conn.execute(
                f"SELECT idempotency_key FROM {ENTRY} WHERE idempotency_key IS NOT NULL "
                "ORDER BY id DESC LIMIT 1 OFFSET 1000"
            ).fetchone()
            mid_row = conn.execute(f"SELECT max(id) / 2 FROM {ENTRY}").fetchone()
        key = str(key_row[0]) if key_row else "none"
        size = entry_count(url)
        deep = min(500, size // 100)  # page 500 (the last page of a --small run's first stage)
        middle = int(mid_row[0]) if mid_row and mid_row[0] is not None else 1
        entries = reverse("admin:app_alpha_alphaentry_changelist")
        balances = reverse("admin:app_alpha_alphabalance_changelist")
        week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).strftime(
            "%Y-%m-%d+00:00:00%%2B00:00"
        )
        return {
            "entries: changelist": entries,
            "entries: page 500": f"{entries}?p={deep}",
            "entries: one user": f"{entries}?user__id__exact={users // 2}",
            "entries: search idempotency key": f"{entries}?q={key}",
            "entries: search description 'bonus'": f"{entries}?q=bonus",
            "entries: operation filter": f"{entries}?operation__exact=CREDIT_SPEND",
            "entries: last 7 days": f"{entries}?created_at__gte={week_ago}",
            "entries: cursor mid-table": f"{entries}?cursor={middle}",
            "balances: changelist": balances,
            "balances: page 500": f"{balances}?p={min(500, users // 100)}",
            "balances: search a user": f"{balances}?q=scale-{users // 3}",
        }

    def measure(self, path: str, repeat: int) -> tuple[float, float, int]:
        """(p50 ms, p95 ms, rows on the page)."""
        rows = 0
        for _ in range(3):
            response = self.client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code}")
            # Result rows: the <tr> of the result table but its header.
            html = response.content.decode()
            table = html[html.find('id="result_list"') :]
            rows = max(0, table[: table.find("</table>")].count("<tr") - 1) if table else 0
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = self.client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, path
        return statistics.median(times), pct(times, 95), rows

    def ledger_queries(self, path: str) -> tuple[list[tuple[str, float]], int]:
        """The page's statements on the ledger's tables with their times (ms), and how many
        statements the page sent in all."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            self.client.get(path)
        mine = [
            (q["sql"], float(q["time"]) * 1000)
            for q in queries.captured_queries
            if '"app_alpha_' in q["sql"]
        ]
        return mine, len(queries.captured_queries)


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(str(r[0]) for r in cursor.fetchall())


def run_command(*args: str) -> tuple[float, str]:
    from django.core.management import call_command

    err = io.StringIO()
    t0 = time.perf_counter()
    call_command(*args, stdout=io.StringIO(), stderr=err)
    return time.perf_counter() - t0, err.getvalue()


def export(url: str) -> tuple[float, float, int]:
    """ledger_export of the whole alpha ledger to /dev/null: (seconds, rows/s, peak RSS MB)."""
    env = bench_env(url, DJANGO_SETTINGS_MODULE="bench.history_settings")
    t0 = time.perf_counter()
    with open(os.devnull, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "ledger_export", "--ledger", "alpha"],
            cwd=BASE_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = [0]

        def watch() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while proc.poll() is None:
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
                except OSError:
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, err = proc.communicate()
        watcher.join()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"ledger_export failed: {err}")
    rows = entry_count(url)
    log(f"  export: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return seconds, rows / seconds, peak[0] // 1024


def measure_stage(url: str, users: int, repeat: int, with_export: bool) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    size = entry_count(url)
    log(f"\n== {size:,} entries, {users:,} users: measuring ==")
    figures: dict[str, Any] = {"entries": size, "pages": {}, "explain": {}}
    admin = Admin()
    for name, path in admin.pages(url, users).items():
        p50, p95, rows = admin.measure(path, repeat)
        statements, queries = admin.ledger_queries(path)
        figures["pages"][name] = {
            "path": path,
            "p50_ms": round(p50, 1),
            "p95_ms": round(p95, 1),
            "rows": rows,
            "queries": queries,
            "ledger_sql_ms": round(sum(ms for _, ms in statements), 1),
        }
        figures["explain"][name] = [{"sql": sql, "plan": explain(sql)} for sql, _ in statements]
        sql_ms = figures["pages"][name]["ledger_sql_ms"]
        log(
            f"  {name:40} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
            f"({rows} rows, {queries} queries, ledger SQL {sql_ms} ms)"
        )
    from core_ledger.ledger import registry
    from core_ledger.selectors import ledger_totals

    t0 = time.perf_counter()
    ledger_totals(ledger=registry.get("alpha"))
    figures["totals_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    log(f"  balances totals aggregate (cached a minute by the page): {figures['totals_ms']} ms")
    seconds, err = run_command("ledger_verify", "--ledger", "alpha", "--full", "--settle", "0")
    figures["full_verify_s"] = round(seconds, 2)
    figures["full_verify_rate"] = round(size / seconds)
    log(f"  full verify: {seconds:.1f} s, {size / seconds:,.0f} entries/s")
    add_new_entries(url, NEW_ENTRIES)
    seconds, err = run_command("ledger_verify", "--ledger", "alpha", "--settle", "0")
    figures["incremental_verify_s"] = round(seconds, 3)
    log(f"  incremental verify of {NEW_ENTRIES:,} new entries: {seconds:.2f} s ({err.strip()})")
    if with_export:
        seconds, rate, rss = export(url)
        figures["export"] = {"seconds": round(seconds, 1), "rows_per_s": round(rate), "rss_mb": rss}
        log(f"  export: {seconds:.0f} s, {rate:,.0f} rows/s, peak RSS {rss} MB")
    connections.close_all()
    return figures


def table(stages: list[dict[str, Any]]) -> str:
    head = "| measure | " + " | ".join(f"{s['entries']:,} entries" for s in stages) + " | target |"
    lines = [head, "|" + " --- |" * (len(stages) + 2)]
    names = list(stages[0]["pages"])
    for name in names:
        cells = [
            f"p50 {s['pages'][name]['p50_ms']} / p95 {s['pages'][name]['p95_ms']} ms"
            for s in stages
        ]
        ok = all(s["pages"][name]["p95_ms"] <= TARGET_ADMIN_P95_MS for s in stages)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | p95 ≤ {TARGET_ADMIN_P95_MS:g} ms "
            f"{'✓' if ok else '✗'} |"
        )
    lines.append(
        "| balances totals aggregate (once a minute, cached) | "
        + " | ".join(f"{s['totals_ms']} ms" for s in stages)
        + " | - |"
    )
    inc = [s["incremental_verify_s"] for s in stages]
    lines.append(
        f"| incremental verify, {NEW_ENTRIES:,} new | "
        + " | ".join(f"{v} s" for v in inc)
        + f" | ≤ {TARGET_INCREMENTAL_S:g} s {'✓' if max(inc) <= TARGET_INCREMENTAL_S else '✗'} |"
    )
    full = [s["full_verify_rate"] for s in stages]
    lines.append(
        "| full verify | "
        + " | ".join(f"{s['full_verify_s']} s, {s['full_verify_rate']:,}/s" for s in stages)
        + f" | ≥ {TARGET_FULL_RATE:,.0f}/s {'✓' if min(full) >= TARGET_FULL_RATE else '✗'} |"
    )
    if all("export" in s for s in stages):
        lines.append(
            "| export to /dev/null | "
            + " | ".join(
                f"{s['export']['rows_per_s']:,} rows/s, {s['export']['rss_mb']} MB RSS"
                for s in stages
            )
            + " | flat memory |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="Requests per admin page.")
    parser.add_argument("--export", action="store_true", help="Also time ledger_export.")
    parser.add_argument(
        "--small", action="store_true", help="20,000 users, 200,000 entries: a quick check."
    )
    args = parser.parse_args(argv)
    if args.small:
        args.users, args.entries, args.repeat = 20_000, 200_000, 10
    if args.entries < args.users:
        parser.error("--entries must be at least --users (one seed entry per user)")

    started = time.perf_counter()
    url = with_database(source_url(), SCALE_DB)
    log(f"Database: {SCALE_DB} (bench-only; TRUNCATE allowed there)")
    ensure_database(url)
    os.environ.update(bench_env(url, DJANGO_SETTINGS_MODULE="bench.history_settings"))
    import django

    django.setup()

    log(f"\n== building {args.users:,} users with one entry each ==")
    reset(url)
    create_users(url, args.users)
    vacuum(url)
    stages = [measure_stage(url, args.users, args.repeat, args.export)]
    more = args.entries - entry_count(url)
    if more > 0:
        log(f"\n== growing the history by {more:,} entries ==")
        grow_history(url, args.users, more)
        vacuum(url)
        stages.append(measure_stage(url, args.users, args.repeat, args.export))

    version = server_version(url)
    log(f"\nMachine: {os.cpu_count()} CPU(s), PostgreSQL {version}")
    log("Admin pages: Django's test Client in the bench process, superuser, DEBUG=0.\n")
    log(table(stages))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"scale-{stamp}{'-small' if args.small else ''}.json"
    path.write_text(
        json.dumps(
            {
                "when": stamp,
                "postgresql": version,
                "cpu_count": os.cpu_count(),
                "users": args.users,
                "seconds": round(time.perf_counter() - started),
                "stages": stages,
            },
            indent=2,
        )
    )
    log(f"\n{time.perf_counter() - started:.0f} s; figures and query plans in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

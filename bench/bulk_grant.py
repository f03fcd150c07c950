"""Scenario 4: ``ledger_grant`` to 100,000 users vs a set-based INSERT … SELECT; a rerun that
must post nothing; and the peak memory of the grant and of ``ledger_export``.

Two grants, each against a baseline statement that writes the same rows: SIGNUP_CREDIT, which
never expires (an entry and a balance move per user: the shape every grant had before expiring
credits), and alpha's DAILY_REWARD, which expires after 7 days, so each grant also makes a lot
(a third row per user, in the baseline too). The never-expiring grant and its baseline take
turns, three rounds from the same starting state, and each side's figure is the median.

The grant and the export run as child processes (``manage.py``-style, through
``bench.command``) so that their peak RSS is their own (``VmHWM``). Memory must stay flat as
the data grows: each is also run on a data set a tenth of the size, and the two peaks compared.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from bench.common import (
    BALANCE_TABLE,
    BASE_DIR,
    ENTRY_TABLE,
    LOT_TABLE,
    analyze,
    bench_env,
    connect,
    create_history,
    create_users,
    half_range,
    reset,
)
from bench.report import Context, Row

NAME = "bulk_grant"
GRANT = ["ledger_grant", "--ledger", "alpha", "--operation", "SIGNUP_CREDIT", "--all-users"]
GRANT_EXPIRING = ["ledger_grant", "--ledger", "alpha", "--operation", "DAILY_REWARD", "--all-users"]
ROUNDS = 3  # the never-expiring grant and its baseline, in turns
EXPORT = ["ledger_export", "--ledger", "alpha", "--format", "jsonl"]
SIGNUP_CREDIT = 100  # alpha's fixed amounts (app_alpha/ledger.py)
DAILY_REWARD = 10


@dataclass
class Child:
    seconds: float
    max_rss_mb: float
    stdout: str


def run_command(url: str, args: list[str], *, keep_stdout: bool = True) -> Child:
    """Run ``bench.command`` in a child process; its own timing and peak RSS (bench/command.py)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.command", *args],
            cwd=BASE_DIR,
            env=bench_env(url),
            stdout=out if keep_stdout else subprocess.DEVNULL,
            stderr=err,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {stderr[-2000:]}")
    marks = dict(line.split()[:2] for line in stderr.splitlines() if line.startswith("BENCH_"))
    seconds = float(marks["BENCH_SECONDS"])
    peak_kb = int(marks["BENCH_PEAK_KB"])
    return Child(seconds=seconds, max_rss_mb=peak_kb / 1024, stdout=stdout)


def baseline_grant(url: str) -> tuple[float, int]:
    """The never-expiring grant in one set-based statement: an entry per active user, balances
    moved."""
    with connect(url) as conn:
        t0 = time.perf_counter()
        cur = conn.execute(
            f"WITH ins AS (INSERT INTO {ENTRY_TABLE} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day) "
            "SELECT b.user_id, 'SIGNUP_CREDIT', %(a)s, b.balance + %(a)s, '', '', '{}'::jsonb, "
            "clock_timestamp(), (now() AT TIME ZONE 'UTC')::date "
            f"FROM {BALANCE_TABLE} b JOIN auth_user u ON u.id = b.user_id "
            "WHERE u.is_active ORDER BY b.user_id RETURNING user_id) "
            f"UPDATE {BALANCE_TABLE} b SET balance = b.balance + %(a)s, "
            "updated_at = clock_timestamp() FROM ins WHERE b.user_id = ins.user_id",
            {"a": SIGNUP_CREDIT},
        )
        rows = cur.rowcount
        conn.commit()
        return time.perf_counter() - t0, rows


def baseline_expiring_grant(url: str) -> tuple[float, int]:
    """The expiring grant in one statement: the entry, its lot, and the balance row's lot
    credits and next expiry."""
    with connect(url) as conn:
        t0 = time.perf_counter()
        cur = conn.execute(
            f"WITH ins AS (INSERT INTO {ENTRY_TABLE} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day, expires_at) "
            "SELECT b.user_id, 'DAILY_REWARD', %(a)s, b.balance + %(a)s, '', '', '{}'::jsonb, "
            "clock_timestamp(), (now() AT TIME ZONE 'UTC')::date, now() + interval '7 days' "
            f"FROM {BALANCE_TABLE} b JOIN auth_user u ON u.id = b.user_id "
            "WHERE u.is_active ORDER BY b.user_id RETURNING id, user_id, amount, expires_at), "
            f"lots AS (INSERT INTO {LOT_TABLE} (entry_id, user_id, amount, remaining, expires_at) "
            "SELECT id, user_id, amount, amount, expires_at FROM ins) "
            f"UPDATE {BALANCE_TABLE} b SET balance = b.balance + %(a)s, "
            "lot_credits = b.lot_credits + ins.amount, "
            "next_expiry = least(b.next_expiry, ins.expires_at), "
            "updated_at = clock_timestamp() FROM ins WHERE b.user_id = ins.user_id",
            {"a": DAILY_REWARD},
        )
        rows = cur.rowcount
        conn.commit()
        return time.perf_counter() - t0, rows


def _granted(stdout: str) -> int:
    # "alpha SIGNUP_CREDIT: 100000 granted, 0 already had it, 0 failed."
    return int(stdout.split(":", 1)[1].split("granted")[0].strip())


def _entries(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {ENTRY_TABLE}").fetchone()
        assert row is not None
        return int(row[0])


def _memory_pass(ctx: Context, users: int, history: int, label: str) -> dict[str, float]:
    """Grant to ``users`` users, then export them plus a ``history``-entry user; peaks in MB."""
    reset(ctx.url)
    create_users(ctx.url, users)
    grant = run_command(ctx.url, GRANT)
    (long_user,) = create_users(ctx.url, 1, prefix="long", seed=False)
    create_history(ctx.url, long_user, history)
    entries = _entries(ctx.url)
    export = run_command(ctx.url, EXPORT, keep_stdout=False)
    print(
        f"  {label}: grant to {users:,} users peak RSS {grant.max_rss_mb:.1f} MB; "
        f"export of {entries:,} entries peak RSS {export.max_rss_mb:.1f} MB "
        f"({export.seconds:.1f} s, {entries / export.seconds:,.0f} rows/s)",
        flush=True,
    )
    return {
        "users": users,
        "entries": entries,
        "grant_rss_mb": grant.max_rss_mb,
        "grant_seconds": grant.seconds,
        "export_rss_mb": export.max_rss_mb,
        "export_seconds": export.seconds,
    }


def run(ctx: Context) -> list[Row]:
    users = 2_000 if ctx.smoke else 100_000
    history = 20_000 if ctx.smoke else 1_000_000

    # The grant and its baseline (the same rows as one INSERT … SELECT) take turns from the same
    # starting state, ROUNDS times; each side's figure is the median of its rounds.
    rounds = 1 if ctx.smoke else ROUNDS
    base_rates: list[float] = []
    rates: list[float] = []
    first = Child(0.0, 0.0, "")
    granted = 0
    for _ in range(rounds):
        reset(ctx.url)
        create_users(ctx.url, users)
        base_seconds, base_rows = baseline_grant(ctx.url)
        base_rates.append(base_rows / base_seconds)
        reset(ctx.url)
        create_users(ctx.url, users)
        first = run_command(ctx.url, GRANT)
        granted = _granted(first.stdout)
        rates.append(granted / first.seconds)
    base_rate, rate = statistics.median(base_rates), statistics.median(rates)
    spread = f"±{half_range(rates):.0%} / ±{half_range(base_rates):.0%}"
    print(
        f"  baseline INSERT … SELECT: {base_rate:,.0f}/s (median of {rounds}: "
        + ", ".join(f"{r:,.0f}" for r in base_rates)
        + ")",
        flush=True,
    )
    print(
        f"  ledger_grant: {granted:,} granted, {rate:,.0f}/s (median of {rounds}: "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + f"), peak RSS {first.max_rss_mb:.1f} MB",
        flush=True,
    )
    again = run_command(ctx.url, GRANT)
    regranted = _granted(again.stdout)
    print(
        f"  rerun: {regranted:,} granted in {again.seconds:.2f} s "
        f"({again.seconds / first.seconds:.1%} of the first run)",
        flush=True,
    )

    # The expiring grant: each entry also makes a lot; its baseline writes the lots too.
    reset(ctx.url)
    create_users(ctx.url, users)
    lot_base_seconds, lot_base_rows = baseline_expiring_grant(ctx.url)
    lot_base_rate = lot_base_rows / lot_base_seconds
    reset(ctx.url)
    create_users(ctx.url, users)
    expiring = run_command(ctx.url, GRANT_EXPIRING)
    expiring_granted = _granted(expiring.stdout)
    expiring_rate = expiring_granted / expiring.seconds
    print(
        f"  expiring grant (a lot each): {expiring_granted:,} in {expiring.seconds:.2f} s "
        f"= {expiring_rate:,.0f}/s; its one-statement baseline {lot_base_rate:,.0f}/s",
        flush=True,
    )
    analyze(ctx.url)

    # Memory: the grant above, and the export over 1,000,000+ entries, vs a tenth of the data.
    (long_user,) = create_users(ctx.url, 1, prefix="long", seed=False)
    create_history(ctx.url, long_user, history)
    entries = _entries(ctx.url)
    export = run_command(ctx.url, EXPORT, keep_stdout=False)
    print(
        f"  ledger_export of {entries:,} entries: {export.seconds:.1f} s "
        f"({entries / export.seconds:,.0f} rows/s), peak RSS {export.max_rss_mb:.1f} MB",
        flush=True,
    )
    small = _memory_pass(ctx, users // 10, history // 10, "a tenth of the data")

    ctx.record(
        NAME,
        {
            "users": users,
            "baseline": {"per_second": base_rate, "rounds_per_second": base_rates},
            "grant": {
                "entries": granted,
                "per_second": rate,
                "rounds_per_second": rates,
                "seconds": first.seconds,
                "rss_mb": first.max_rss_mb,
            },
            "rerun": {"entries": regranted, "seconds": again.seconds},
            "expiring": {
                "entries": expiring_granted,
                "seconds": expiring.seconds,
                "baseline_entries": lot_base_rows,
                "baseline_seconds": lot_base_seconds,
            },
            "export": {"entries": entries, "seconds": export.seconds, "rss_mb": export.max_rss_mb},
            "small": small,
        },
    )
    return [
        Row(
            f"4. bulk grant (never expires), {users:,} users",
            "entries/s",
            rate,
            base_rate,
            target=0.8,
            spread=spread,
            extra_ok=rate >= 20_000,
            extra_target=">= 20,000/s",
        ),
        Row(
            f"4. bulk grant (expires: a lot each), {users:,} users",
            "entries/s",
            expiring_rate,
            lot_base_rate,
            target=0.3,
        ),
        Row(
            "4. grant rerun vs first run",
            "seconds",
            again.seconds,
            first.seconds,
            max_ratio=0.1,
            extra_ok=regranted == 0,
            extra_target="posts 0",
            detail=f"posted {regranted}",
        ),
        Row(
            f"4. grant peak RSS, {users:,} vs {small['users']:,} users",
            "MB",
            first.max_rss_mb,
            small["grant_rss_mb"],
            max_ratio=1.25,
        ),
        Row(
            f"4. export peak RSS, {entries:,} vs {small['entries']:,} entries",
            "MB",
            export.max_rss_mb,
            small["export_rss_mb"],
            max_ratio=1.25,
        ),
    ]

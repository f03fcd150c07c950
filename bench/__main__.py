"""``python -m bench [--smoke] [--only SCENARIO ...]``: run the benchmarks, print the table.

See bench/README.md. Exit status 0 when every scenario ran (targets missed are reported, not
failures), 1 when a scenario crashed or the ledger invariants do not hold afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import traceback
from pathlib import Path

from bench.common import bench_env, bench_url, ensure_database, ledger_problems, server_version
from bench.report import Context, Row, dump, table

SCENARIOS = (
    "post_single",
    "post_concurrent",
    "balance_reads",
    "bulk_grant",
    "rest",
    "pool",
    "lots",
    "holds",
    "events",
)
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="Tiny sizes: a quick check, no figures."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"Run only these scenarios ({', '.join(SCENARIOS)}).",
    )
    args = parser.parse_args(argv)
    selected = [s for s in SCENARIOS if not args.only or s in args.only]

    started = time.perf_counter()
    url = bench_url()
    print(
        f"Bench database: {url.rsplit('/', 1)[-1]} (bench-only; TRUNCATE allowed there)", flush=True
    )
    ensure_database(url)
    # This process and its forked workers run the project with production settings on the
    # bench database: DEBUG off (no query log), the bench URLconf.
    os.environ.update(bench_env(url))
    import django

    django.setup()

    ctx = Context(url=url, smoke=args.smoke)
    rows: list[Row] = []
    crashed: list[str] = []
    for name in selected:
        module = __import__(f"bench.{name}", fromlist=["run"])
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            rows.extend(module.run(ctx))
        except Exception:
            traceback.print_exc()
            crashed.append(name)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)

    problems = ledger_problems(url)
    print(f"\nledger_check on the bench database: {len(problems)} problem(s)")
    for line in problems[:10]:
        print("  " + line)

    cpu = os.cpu_count()
    version = server_version(url)
    print(
        f"\nMachine: {cpu} CPU(s), PostgreSQL {version}; {'smoke run' if args.smoke else 'full run'}"
    )
    print(table(rows))
    elapsed = time.perf_counter() - started
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}{'-smoke' if args.smoke else ''}.json"
    dump(
        path,
        {
            "when": stamp,
            "smoke": args.smoke,
            "cpu_count": cpu,
            "postgresql": version,
            "python": sys.version.split()[0],
            "seconds": round(elapsed, 1),
            "rows": [r.as_dict() for r in rows],
            "figures": ctx.figures,
            "crashed": crashed,
            "ledger_problems": problems,
        },
    )
    print(
        f"\n{elapsed:.0f} s; figures written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed or problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenario 2: posts from 4 and 16 processes, random users and one hot user (vs psycopg)."""

from __future__ import annotations

from bench import workers
from bench.common import create_users, reset, timed_pool
from bench.report import Context, Row

NAME = "post_concurrent"


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    seconds = 1.0 if ctx.smoke else 6.0
    levels = (4,) if ctx.smoke else (4, 16)
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    hot = [ids[0]]
    print(f"  {users} users; {seconds:g} s per run")
    rows: list[Row] = []
    figures: dict[str, object] = {"users": users}
    for processes in levels:
        for kind, pool in (("random users", ids), ("hot user", hot)):
            project = timed_pool(workers.service_spend(pool), processes, seconds)
            ctx.show(f"{processes} procs, {kind}: service", project)
            baseline = timed_pool(workers.psycopg_spend(ctx.url, pool), processes, seconds)
            ctx.show(f"{processes} procs, {kind}: psycopg", baseline)
            figures[f"{processes}_{kind.replace(' ', '_')}"] = {
                "project": project.summary(),
                "baseline": baseline.summary(),
            }
            rows.append(
                Row(
                    f"2. post, {processes} procs, {kind}",
                    "entries/s",
                    project.rate,
                    baseline.rate,
                    target=0.5 if processes == 4 else None,
                    detail=(
                        f"p50/p99 {project.pct(50):.1f}/{project.pct(99):.1f} ms vs "
                        f"{baseline.pct(50):.1f}/{baseline.pct(99):.1f} ms"
                    ),
                )
            )
    ctx.record(NAME, figures)
    return rows

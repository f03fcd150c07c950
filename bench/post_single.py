"""Scenario 1: posts from one client, random users out of 10,000 (service vs plain psycopg)."""

from __future__ import annotations

from bench import workers
from bench.common import create_users, reset, timed_pool
from bench.report import Context, Row

NAME = "post_single"


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    seconds = 1.0 if ctx.smoke else 10.0
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    print(f"  {users} users; one process, {seconds:g} s each")
    project = timed_pool(workers.service_spend(ids), 1, seconds)
    ctx.show("service entry_post", project)
    baseline = timed_pool(workers.psycopg_spend(ctx.url, ids), 1, seconds)
    ctx.show("psycopg baseline", baseline)
    ctx.record(NAME, {"users": users, "project": project.summary(), "baseline": baseline.summary()})
    return [
        Row(
            "1. post, 1 client",
            "entries/s",
            project.rate,
            baseline.rate,
            target=0.6,
            detail=f"p50 {project.pct(50):.2f} ms vs {baseline.pct(50):.2f} ms",
        )
    ]

"""Scenario: change events. What the entry tables' event trigger costs a post and a bulk grant
(the same work with the trigger disabled, in the same run: posts in interleaved 1 s slices, the
trigger switched before each slice; grants in turns over three rounds, medians), and how fast
``ledger_deliver`` delivers to a local receiver that answers at once.

Targets (issue "Change events"): posting with events >= 0.85x posting without; a bulk grant
with events within 30% of one without (>= 0.77x); the worker >= 500 events/s.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import workers
from bench.bulk_grant import run_command
from bench.common import ENTRY_TABLE, connect, create_users, half_range, reset
from bench.interleave import ForkedSide, HookedSide, pair, spread_text
from bench.report import Context, Row

NAME = "events"


def _trigger_name(url: str) -> str:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
            "AND tgname LIKE 'pgtrigger_entry_events_%%'",
            [ENTRY_TABLE],
        ).fetchone()
    assert row is not None, f"no event trigger on {ENTRY_TABLE}: migrate the bench database"
    return str(row[0])


@contextmanager
def events_off(url: str) -> Iterator[None]:
    """The entry table's event trigger disabled (what posting cost before events existed)."""
    name = _trigger_name(url)
    set_trigger(url, name, enabled=False)
    try:
        yield
    finally:
        set_trigger(url, name, enabled=True)


def set_trigger(url: str, name: str, *, enabled: bool) -> None:
    """Enable or disable the entry table's event trigger ``name`` (bench database only)."""
    with connect(url, autocommit=True) as conn:
        conn.execute(
            f"ALTER TABLE {ENTRY_TABLE} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {name}"
        )


class _Quick(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


GRANT_ROUNDS = 3


def run(ctx: Context) -> list[Row]:
    users = 200 if ctx.smoke else 10_000
    rounds, seconds = (2, 0.5) if ctx.smoke else (10, 1.0)
    reset(ctx.url)
    ids = create_users(ctx.url, users)
    name = _trigger_name(ctx.url)
    print(
        f"  {users} users; one process; {rounds} rounds of {seconds:g} s slices per side, "
        "the event trigger enabled before each slice of one side and disabled before the other's"
    )
    try:
        with_events, without = pair(
            "post with events vs without",
            lambda: HookedSide(
                ForkedSide(workers.service_spend(ids), 1),
                lambda: set_trigger(ctx.url, name, enabled=True),
            ),
            lambda: HookedSide(
                ForkedSide(workers.service_spend(ids), 1),
                lambda: set_trigger(ctx.url, name, enabled=False),
            ),
            rounds=rounds,
            seconds=seconds,
        )
    finally:
        set_trigger(ctx.url, name, enabled=True)
    rows = [
        Row(
            "events: post with events vs without",
            "entries/s",
            with_events.median,
            without.median,
            target=0.85,
            spread=spread_text(with_events, without),
            detail=f"p50 {with_events.pct(50):.2f} ms vs {without.pct(50):.2f} ms",
        )
    ]

    grant_users = 2_000 if ctx.smoke else 100_000
    reset(ctx.url)
    create_users(ctx.url, grant_users, prefix="grant")
    grant = ["ledger_grant", "--ledger", "alpha", "--operation", "CREDIT_ADD", "--amount", "1"]
    plain: list[float] = []
    evented: list[float] = []
    for n in range(GRANT_ROUNDS):  # in turns; each grant has its own key, so each writes every row
        with events_off(ctx.url):
            seconds_off = run_command(
                ctx.url, [*grant, "--all-users", f"--idempotency-key=p{n}"]
            ).seconds
        plain.append(grant_users / seconds_off)
        seconds_on = run_command(
            ctx.url, [*grant, "--all-users", f"--idempotency-key=e{n}"]
        ).seconds
        evented.append(grant_users / seconds_on)
    plain_rate, evented_rate = statistics.median(plain), statistics.median(evented)
    ratios = [e / p for e, p in zip(evented, plain, strict=True)]
    print(
        f"  bulk grant of {grant_users:,}: {evented_rate:,.0f}/s with events, "
        f"{plain_rate:,.0f}/s without (medians of {GRANT_ROUNDS} rounds; per-round ratios "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ")"
    )
    rows.append(
        Row(
            f"events: bulk grant of {grant_users:,} with events vs without",
            "entries/s",
            evented_rate,
            plain_rate,
            target=0.77,
            spread=f"±{half_range(evented):.0%} / ±{half_range(plain):.0%} "
            f"(ratio ±{half_range(ratios):.0%})",
        )
    )

    delivered, rate = _delivery(ctx)
    rows.append(
        Row(
            f"events: ledger_deliver, {delivered:,} events to a local receiver",
            "events/s",
            rate,
            500,
            target=1.0,
        )
    )
    ctx.record(
        NAME,
        {
            "post_with": with_events.summary(),
            "post_without": without.summary(),
            "grant_users": grant_users,
            "grant_with_per_s": evented_rate,
            "grant_without_per_s": plain_rate,
            "deliver_events": delivered,
            "deliver_per_s": rate,
        },
    )
    return rows


def _wait_final(url: str, seconds: float = 120.0) -> None:
    """Until the feed can hand out every event written (a transaction anywhere on the server
    holds it back while it runs: the worker's --once would stop short)."""
    deadline = time.monotonic() + seconds
    with connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT coalesce(max(xid)::text::numeric < "
                "pg_snapshot_xmin(pg_current_snapshot())::text::numeric, true) "
                "FROM core_ledger_event"
            ).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("a long transaction on the server held the feed back")
            time.sleep(0.05)


def _delivery(ctx: Context) -> tuple[int, float]:
    """``ledger_deliver --once`` in a child process, every event to one endpoint on loopback."""
    from django.conf import settings

    from core_ledger.services.webhooks import webhook_endpoint_create

    users = 250 if ctx.smoke else 2_500  # a seed credit and a grant each: two events
    reset(ctx.url)
    with connect(ctx.url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE core_ledger_webhook_delivery, core_ledger_webhook_endpoint, "
            "core_ledger_event RESTART IDENTITY CASCADE"
        )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ["WEBHOOK_ALLOW_PRIVATE"] = "1"  # the child's environment (a loopback receiver)
    settings.SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE = True
    try:
        webhook_endpoint_create(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
        create_users(ctx.url, users, prefix="hook")
        run_command(
            ctx.url,
            [
                "ledger_grant",
                "--ledger",
                "alpha",
                "--operation",
                "CREDIT_ADD",
                "--amount",
                "1",
                "--all-users",
                "--idempotency-key",
                "hook",
            ],
        )
        _wait_final(ctx.url)
        child = run_command(ctx.url, ["ledger_deliver", "--once", "--batch-size", "500"])
    finally:
        server.shutdown()
        server.server_close()
    with connect(ctx.url) as conn:
        row = conn.execute(
            "SELECT delivered, (SELECT count(*) FROM core_ledger_event) "
            "FROM core_ledger_webhook_endpoint"
        ).fetchone()
    assert row is not None
    delivered, written = int(row[0]), int(row[1])
    # The users' seed credits are events too: every event written is delivered.
    assert delivered == written >= 2 * users, f"delivered {delivered} of {written} events"
    rate = delivered / child.seconds
    print(f"  ledger_deliver: {delivered:,} events in {child.seconds:.2f} s, {rate:,.0f}/s")
    return delivered, rate

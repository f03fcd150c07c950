"""Helpers of the events tests."""

from __future__ import annotations

import time

from django.db import connection

# Generous: on a shared server another test run may keep a transaction open for minutes.
WAIT_SECONDS = 300.0


def wait_until_final(seconds: float = WAIT_SECONDS) -> None:
    """Wait until every event written so far can be handed out by the feed.

    Transaction ids are the server's, not one database's: a long transaction anywhere on the
    server (another test run on a shared machine) holds the feed back until it ends. The feed
    is right to wait; tests that read "everything" wait with it.
    """
    deadline = time.monotonic() + seconds
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(max(xid)::text::numeric < "
                "pg_snapshot_xmin(pg_current_snapshot())::text::numeric, true) "
                "FROM core_ledger_event"
            )
            row = cursor.fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "a transaction on the server held the feed back"
        time.sleep(0.05)

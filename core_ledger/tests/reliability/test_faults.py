"""Injected faults: a backend killed mid-transaction, lock and statement timeouts on a hot row,
and multi-row lockers (bulk grants) racing single posts and each other.

Each fault is injected into a real service call, paused at a chosen statement with
``connection.execute_wrapper``; afterwards nothing half-written may remain, and a retry with the
same idempotency key must post exactly once.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections

from core_ledger.exceptions import InsufficientCredits, LedgerBusy, LedgerError
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, ledger_check
from core_ledger.services import entry_post, entry_reverse, grant_bulk
from core_ledger.tests.reliability.helpers import (
    PauseBefore,
    StallEntryInsert,
    Worker,
    fast_user,
    snapshot,
    time_order_violations,
    token_client,
    wait_until_waiting_on_lock,
)

pytestmark = pytest.mark.django_db(transaction=True)

FAULTS = {"terminated backends": 0, "lock timeouts": 0, "statement timeouts": 0}


def _assert_nothing_written(before: Any, user_ids: list[int], key: str | None = None) -> None:
    after = snapshot(user_ids)
    assert after == before, f"a refused or failed write left something: {before} -> {after}"
    if key is not None:
        from core_ledger.ledger import registry

        for ledger in registry:
            assert not ledger.entry_model.objects.filter(idempotency_key=key).exists()


@pytest.mark.parametrize("operation", [Op.CREDIT_ADD, Op.CREDIT_SPEND])
def test_backend_terminated_mid_post_leaves_nothing_and_retry_posts_once(
    ledger: AnyLedger, operation: str, figures: Any
) -> None:
    user = fast_user()
    before = snapshot([user.pk])
    key = f"terminated-{operation}"
    stall = StallEntryInsert(ledger, user.pk, key)

    def post() -> Any:
        return entry_post(
            ledger=ledger, user_id=user.pk, operation=operation, amount=7, idempotency_key=key
        )

    victim = Worker(post)
    victim.start()
    stall.wait_reached(victim)
    # The victim is inside its statement: it has moved and locked the balance row ...
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {ledger.balance_model._meta.db_table} WHERE user_id = %s "
            "FOR UPDATE NOWAIT",
            [user.pk],
        )
    # ... and that uncommitted change is invisible to everyone else.
    assert balance_get(ledger=ledger, user_id=user.pk) == before.balances[(ledger.label, user.pk)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [victim.pid])
        assert cursor.fetchone()[0] is True
    FAULTS["terminated backends"] += 1
    stall.release()
    with pytest.raises((DatabaseError, LedgerError)):
        victim.outcome()  # the client is told the write failed: never a false success

    _assert_nothing_written(before, [user.pk], key)

    first = entry_post(
        ledger=ledger, user_id=user.pk, operation=operation, amount=7, idempotency_key=key
    )
    again = entry_post(
        ledger=ledger, user_id=user.pk, operation=operation, amount=7, idempotency_key=key
    )
    assert not first.replayed and again.replayed and again.entry.pk == first.entry.pk
    assert ledger.entry_model.objects.filter(user_id=user.pk, idempotency_key=key).count() == 1
    sign = 1 if operation == Op.CREDIT_ADD else -1
    assert balance_get(ledger=ledger, user_id=user.pk) == (
        before.balances[(ledger.label, user.pk)] + sign * 7
    )
    figures("faults injected so far", dict(FAULTS))


def _hold_balance_row(ledger: AnyLedger, user_id: int) -> Any:
    """A second connection that locks the user's balance row (SELECT … FOR UPDATE) until closed."""
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == connection.settings_dict["NAME"]
        cursor.execute(
            f"SELECT balance FROM {ledger.balance_model._meta.db_table} WHERE user_id = %s "
            "FOR UPDATE",
            [user_id],
        )
    return holder


@pytest.mark.parametrize(
    "timeout",
    [
        ("lock timeouts", "SET lock_timeout = '150ms'"),
        ("statement timeouts", "SET lock_timeout = 0; SET statement_timeout = '150ms'"),
    ],
    ids=["lock_timeout", "statement_timeout"],
)
def test_timeout_on_a_hot_row_is_a_clean_ledger_busy(
    ledger: AnyLedger, timeout: tuple[str, str], figures: Any
) -> None:
    kind, set_sql = timeout
    user = fast_user()
    staff = fast_user(staff=True)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=20).entry
    api = token_client(user)
    staff_api = token_client(staff)
    holder = _hold_balance_row(ledger, user.pk)
    try:
        with connection.cursor() as cursor:
            cursor.execute(set_sql)
        before = snapshot([user.pk])
        attempts: list[Any] = [
            lambda: entry_post(
                ledger=ledger,
                user_id=user.pk,
                operation=Op.CREDIT_ADD,
                amount=5,
                idempotency_key="busy-credit",
            ),
            lambda: entry_post(
                ledger=ledger,
                user_id=user.pk,
                operation=Op.CREDIT_SPEND,
                amount=5,
                actor=user,
                idempotency_key="busy-spend",
            ),
            lambda: entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD),
            lambda: entry_reverse(ledger=ledger, entry_id=credit.pk, reason="busy"),
        ]
        for attempt in attempts:
            with pytest.raises(LedgerBusy):
                attempt()
            FAULTS[kind] += 1
        # Over HTTP: 503 with the code, Retry-able, nothing written.
        response = api.post(
            f"/api/{ledger.label}/entries/",
            {"operation": Op.CREDIT_SPEND, "amount": 3},
            format="json",
            HTTP_IDEMPOTENCY_KEY="busy-http",
        )
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "ledger_busy"
        response = staff_api.post(
            f"/api/{ledger.label}/entries/{credit.pk}/reverse/", {"reason": "busy"}, format="json"
        )
        assert response.status_code == 503, response.content
        assert response.json()["error"]["code"] == "ledger_busy"
        FAULTS[kind] += 2
        _assert_nothing_written(before, [user.pk])
        for key in ("busy-credit", "busy-spend", "busy-http"):
            assert not ledger.entry_model.objects.filter(idempotency_key=key).exists()
    finally:
        holder.rollback()
        holder.close()
        connection.close()  # drop this session's timeouts

    # Once the row is free, the same requests go through, exactly once.
    response = api.post(
        f"/api/{ledger.label}/entries/",
        {"operation": Op.CREDIT_SPEND, "amount": 3},
        format="json",
        HTTP_IDEMPOTENCY_KEY="busy-http",
    )
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    replay = api.post(
        f"/api/{ledger.label}/entries/",
        {"operation": Op.CREDIT_SPEND, "amount": 3},
        format="json",
        HTTP_IDEMPOTENCY_KEY="busy-http",
    )
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == response.json()["id"]
    entry_reverse(ledger=ledger, entry_id=credit.pk, reason="now free")
    figures("faults injected so far", dict(FAULTS))


def test_bulk_grant_stamps_its_entries_after_taking_the_locks(ledger: AnyLedger) -> None:
    """A bulk grant that waits for a user's row must not date that user's entry before the
    entry it waited for: ``balance_at`` reads by time, the chain runs by id.

    Found by this suite: the grant's timestamp was taken before its row locks, so a single post
    committed while the grant waited got a later time but a smaller id than the grant's entry.
    """
    users = sorted((fast_user() for _ in range(3)), key=lambda u: u.pk)
    hot = users[-1]
    bulk_pause = PauseBefore("WITH locked AS")
    single_stall = StallEntryInsert(ledger, hot.pk, "single-time-order")

    def bulk_grant() -> Any:
        with connection.execute_wrapper(bulk_pause):
            return grant_bulk(
                ledger=ledger,
                operation=Op.CREDIT_ADD,
                user_ids=[u.pk for u in users],
                amount=3,
                idempotency_key="bulk-time-order",
            )

    def single_post() -> Any:
        return entry_post(
            ledger=ledger,
            user_id=hot.pk,
            operation=Op.CREDIT_ADD,
            amount=5,
            idempotency_key="single-time-order",
        )

    bulk = Worker(bulk_grant)
    bulk.start()
    bulk_pause.wait_reached()  # balance rows ensured; the locking statement is next
    single = Worker(single_post)
    single.start()
    single_stall.wait_reached(single)  # holds the hot user's row, its entry not yet written
    bulk_pause.release()
    assert bulk.pid_known.wait(10) and bulk.pid is not None
    wait_until_waiting_on_lock(bulk.pid)  # the grant now waits for the hot row
    single_stall.release()
    single_entry = single.outcome().entry
    summary = bulk.outcome()
    assert summary.granted == 3 and summary.failed == 0
    bulk_entry = ledger.entry_model.objects.get(user_id=hot.pk, idempotency_key="bulk-time-order")
    assert bulk_entry.pk > single_entry.pk
    assert bulk_entry.created_at >= single_entry.created_at, (
        f"bulk entry {bulk_entry.pk} dated {bulk_entry.created_at}, before entry "
        f"{single_entry.pk} it came after ({single_entry.created_at})"
    )
    assert time_order_violations(ledger, [u.pk for u in users]) == []


def test_a_post_between_a_grants_pre_check_and_its_write_is_skipped_not_doubled(
    ledger: AnyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """The grant's statement has no ON CONFLICT: a user granted by someone else after the
    pre-check makes the unique index refuse the batch. The grant then reads the batch again and
    writes the rest in one statement (no user-by-user fallback), and nobody is paid twice."""
    users = sorted((fast_user() for _ in range(4)), key=lambda u: u.pk)
    ids = [u.pk for u in users]
    late = users[1]
    pause = PauseBefore("WITH locked AS")

    def daily_grant() -> Any:
        with connection.execute_wrapper(pause):
            return grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, user_ids=ids)

    caplog.set_level(logging.WARNING, logger="core_ledger.services")
    grant = Worker(daily_grant)
    grant.start()
    pause.wait_reached()  # pre-check done: all four lack today's reward
    entry_post(ledger=ledger, user_id=late.pk, operation=Op.DAILY_REWARD)  # commits
    pause.release()
    summary = grant.outcome()
    assert (summary.granted, summary.skipped, summary.failed) == (3, 1, 0), summary
    for user_id in ids:
        assert (
            ledger.entry_model.objects.filter(user_id=user_id, operation=Op.DAILY_REWARD).count()
            == 1
        ), user_id
    one_by_one = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert one_by_one == []
    assert ledger_check(ledger=ledger, user_ids=ids) == []


def test_two_grants_to_all_active_users_at_once_pay_each_user_once(
    ledger: AnyLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """Two ``ledger_grant --all-users`` runs started together find the same users lacking the
    grant; whichever writes a batch second is refused by the unique index, reads it again and
    skips it."""
    ids = [fast_user().pk for _ in range(30)]
    start = threading.Barrier(2, timeout=20)

    def grant() -> Any:
        start.wait()
        return grant_bulk(
            ledger=ledger, operation=Op.DAILY_REWARD, all_active_users=True, batch_size=4
        )

    caplog.set_level(logging.WARNING, logger="core_ledger.services")
    workers = [Worker(grant), Worker(grant)]
    for w in workers:
        w.start()
    first, second = (w.outcome() for w in workers)
    assert first.failed == second.failed == 0, (first, second)
    assert first.granted + second.granted == len(ids), (first, second)
    assert first.skipped + second.skipped == len(ids), (first, second)
    rewards = ledger.entry_model.objects.filter(user_id__in=ids, operation=Op.DAILY_REWARD)
    assert sorted(rewards.values_list("user_id", flat=True)) == sorted(ids)
    one_by_one = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
    assert one_by_one == []
    assert ledger_check(ledger=ledger, user_ids=ids) == []


def _deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


@pytest.mark.slow
def test_bulk_grants_and_single_posts_over_overlapping_users_never_deadlock(
    ledger: AnyLedger, caplog: pytest.LogCaptureFixture, figures: Any
) -> None:
    users = [fast_user().pk for _ in range(12)]
    signup = {u: balance_get(ledger=ledger, user_id=u) for u in users}
    deadlocks_before = _deadlocks()
    start = threading.Barrier(7, timeout=20)
    delta_lock = threading.Lock()
    delta = dict.fromkeys(users, 0)
    rounds, single_posts = 4, 40

    def add(user_id: int, amount: int) -> None:
        with delta_lock:
            delta[user_id] += amount

    def bulk(seed: int) -> int:
        rng = random.Random(seed)
        start.wait()
        granted = 0
        for n in range(rounds):
            subset = rng.sample(users, 8)  # overlapping sets, in random order
            summary = grant_bulk(
                ledger=ledger,
                operation=Op.CREDIT_ADD,
                user_ids=subset,
                amount=2,
                idempotency_key=f"bulk-{seed}-{n}",
                batch_size=3,
            )
            assert summary.failed == 0 and summary.granted == 8, summary
            for u in subset:
                add(u, 2)
            granted += summary.granted
        return granted

    def daily() -> int:
        start.wait()
        summary = grant_bulk(
            ledger=ledger, operation=Op.DAILY_REWARD, user_ids=users[::-1], batch_size=5
        )
        assert summary.failed == 0, summary
        return summary.granted

    def singles(seed: int) -> int:
        rng = random.Random(seed)
        start.wait()
        done = 0
        for _ in range(single_posts):
            u = rng.choice(users)
            if rng.random() < 0.5:
                entry_post(ledger=ledger, user_id=u, operation=Op.CREDIT_ADD, amount=3)
                add(u, 3)
            else:
                try:
                    entry_post(ledger=ledger, user_id=u, operation=Op.CREDIT_SPEND, amount=4)
                    add(u, -4)
                except InsufficientCredits:
                    pass
            done += 1
        return done

    caplog.set_level(logging.WARNING, logger="core_ledger.services")
    workers = (
        [Worker(functools.partial(bulk, s)) for s in (1, 2, 3)]
        + [Worker(daily), Worker(daily)]
        + [Worker(functools.partial(singles, s)) for s in (4, 5)]
    )
    for w in workers:
        w.start()
    results = [w.outcome() for w in workers]
    daily_granted = results[3] + results[4]
    assert daily_granted == len(users)  # two concurrent daily grants: each user paid once
    dailies = ledger.fixed_amount(Op.DAILY_REWARD) or 0
    for u in users:
        assert balance_get(ledger=ledger, user_id=u) == signup[u] + delta[u] + dailies, u
        assert ledger.entry_model.objects.filter(user_id=u, operation=Op.DAILY_REWARD).count() == 1
    failed_batches = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failed_batches == [], failed_batches
    assert ledger_check(ledger=ledger, user_ids=users) == []
    bad = time_order_violations(ledger, users)
    assert bad == [], "\n".join(map(str, bad))
    assert _deadlocks() == deadlocks_before
    operations = sum(results[:3]) + daily_granted + results[5] + results[6]
    figures("bulk/single concurrent operations", operations)


@pytest.mark.slow
def test_backend_of_a_gunicorn_worker_killed_mid_request_is_a_503_and_the_retry_posts_once(
    figures: Any,
) -> None:
    """End to end: the database backend serving a real gunicorn worker dies while the post holds
    the balance row (its entry INSERT waits on another transaction's uncommitted entry with the
    same key, see StallEntryInsert); the client gets a clean 503,
    nothing is written, and the client's retry with the same key posts exactly once."""
    import httpx

    from core_ledger.ledger import registry
    from core_ledger.testing import api_token
    from core_ledger.tests.reliability.helpers import GunicornServer

    ledger = registry.get(registry.labels()[0])
    user = fast_user()
    token = api_token(user)
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": "killed-mid-request"}
    body = {"operation": Op.CREDIT_SPEND, "amount": 9}
    entry_table = ledger.entry_model._meta.db_table
    with GunicornServer(connection.settings_dict["NAME"], workers=2) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert client.get(f"/api/{ledger.label}/balance/", headers=headers).status_code == 200
            before = snapshot([user.pk])
            stall = StallEntryInsert(ledger, user.pk, headers["Idempotency-Key"])
            try:
                request = Worker(
                    lambda: client.post(f"/api/{ledger.label}/entries/", json=body, headers=headers)
                )
                request.start()
                pid = _wait_for_blocked_insert(entry_table)
                with connection.cursor() as cursor:
                    # The worker's transaction has already moved (and locked) the balance row.
                    cursor.execute(
                        "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'transactionid'",
                        [pid],
                    )
                    assert cursor.fetchone()[0] >= 1
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                    assert cursor.fetchone()[0] is True
                FAULTS["terminated backends"] += 1
            finally:
                stall.release()
            response = request.outcome()
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] in ("database_unavailable", "ledger_busy")
            assert snapshot([user.pk]) == before
            assert not ledger.entry_model.objects.filter(
                idempotency_key=headers["Idempotency-Key"]
            ).exists()

            retry = client.post(f"/api/{ledger.label}/entries/", json=body, headers=headers)
            assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
            again = client.post(f"/api/{ledger.label}/entries/", json=body, headers=headers)
            assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
            assert again.json()["id"] == retry.json()["id"]
        # The request log's line for the refusal (a 5xx is logged at ERROR with its traceback,
        # by design), and no unhandled error: no 500 anywhere.
        log = server.output(tail=None)
        assert re.search(r"POST /api/\w+/entries/ 503 [\d.]+ms database_unavailable", log), log
        assert not re.search(r" 500 [\d.]+ms", log) and "Internal Server Error" not in log
    assert (
        balance_get(ledger=ledger, user_id=user.pk) == before.balances[(ledger.label, user.pk)] - 9
    )
    figures("faults injected so far", dict(FAULTS))


def _wait_for_blocked_insert(entry_table: str) -> int:
    """The pid of the backend whose INSERT into ``entry_table`` waits on a lock."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid()",
                [f'%INSERT INTO "{entry_table}"%'],
            )
            row = cursor.fetchone()
        if row:
            return int(row[0])
        time.sleep(0.01)  # polling the server's own state
    raise AssertionError("the worker's INSERT never blocked")

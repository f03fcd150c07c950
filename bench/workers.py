"""The operations timed by the write scenarios: the project's service, and its psycopg baseline.

Both post CREDIT_SPEND of 1 credit for a user (the debit path: a conditional ``UPDATE …
RETURNING`` of the balance row, then the entry ``INSERT``, then ``COMMIT``). The baseline runs
the very statements ``core_ledger.services._write`` sends, with plain psycopg and no Django, on
its own connection: what is left between the two figures is the cost of Django and of our code
(validation, policy, the entry object).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.common import BACKEND_PIDS, BALANCE_TABLE, ENTRY_TABLE, WorkerFactory, connect

BASELINE_DEBIT = (
    f'UPDATE "{BALANCE_TABLE}" SET balance = balance + %s, updated_at = clock_timestamp() '
    "WHERE user_id = %s AND balance + %s >= 0 RETURNING balance"
)
BASELINE_INSERT = (
    f'WITH t AS (SELECT clock_timestamp() AS ts) INSERT INTO "{ENTRY_TABLE}" '
    "(user_id, operation, amount, balance_after, idempotency_key, request_fingerprint, "
    "description, metadata, reverses_id, created_by_id, created_at, day) "
    "SELECT %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, t.ts, "
    "(t.ts AT TIME ZONE 'UTC')::date FROM t RETURNING id, created_at, day"
)


def _picker(user_ids: Sequence[int]) -> Callable[[Any], int]:
    if len(user_ids) == 1:
        only = user_ids[0]
        return lambda rng: only
    ids = list(user_ids)
    return lambda rng: ids[rng.randrange(len(ids))]


def service_spend(user_ids: Sequence[int]) -> WorkerFactory:
    """``core_ledger.services.entry_post`` of CREDIT_SPEND 1, as the system (no actor)."""

    def factory(index: int) -> Callable[[Any], None]:
        from core_ledger.ledger import registry
        from core_ledger.services import entry_post

        ledger = registry.get("alpha")
        pick = _picker(user_ids)

        def op(rng: Any) -> None:
            entry_post(ledger=ledger, user_id=pick(rng), operation="CREDIT_SPEND", amount=1)

        return op

    return factory


def psycopg_spend(url: str, user_ids: Sequence[int]) -> WorkerFactory:
    """The same two statements and commit with plain psycopg (default settings)."""

    def factory(index: int) -> Callable[[Any], None]:
        conn = connect(url)
        BACKEND_PIDS.append(conn.info.backend_pid)
        pick = _picker(user_ids)

        def op(rng: Any) -> None:
            user_id = pick(rng)
            try:
                with conn.cursor() as cur:
                    cur.execute(BASELINE_DEBIT, [-1, user_id, -1])
                    row = cur.fetchone()
                    if row is None:
                        raise RuntimeError("insufficient credits")
                    cur.execute(
                        BASELINE_INSERT,
                        [user_id, "CREDIT_SPEND", -1, row[0], None, "", "", "{}", None, None],
                    )
                    cur.fetchone()
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

        return op

    return factory

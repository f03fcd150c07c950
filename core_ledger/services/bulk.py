"""Bulk grants: credit one operation to many users, a batch per transaction, set-based."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from core_ledger.exceptions import (
    AlreadyClaimed,
    IdempotencyKeyReused,
    LedgerError,
    ValidationFailed,
)
from core_ledger.ledger import Direction, Frequency, Ledger, OpT
from core_ledger.models import DESCRIPTION_MAX_LENGTH
from core_ledger.services import idempotency, lots, sql
from core_ledger.services.posting import entry_post
from core_ledger.services.validation import (
    clean_expires_at,
    clean_key,
    clean_text,
    signed_amount,
)

logger = logging.getLogger(__name__)

# Users whose grant status a bulk grant reads per round trip (see grant_bulk).
PRECHECK_SIZE = 10_000


@dataclass
class GrantSummary:
    """What a bulk grant did: ``granted`` new entries, ``skipped`` users that had it already,
    ``conflicts`` users whose idempotency key was used before for another request (as
    ``entry_post`` refuses with ``idempotency_key_reused``), ``failed`` the rest."""

    granted: int = 0
    skipped: int = 0
    conflicts: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.granted + self.skipped + self.conflicts + self.failed


def _chunks(ids: Iterable[int], size: int) -> Iterable[list[int]]:
    batch: list[int] = []
    for user_id in ids:
        batch.append(user_id)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def grant_bulk(
    *,
    ledger: Ledger[Any, Any, OpT],
    operation: OpT,
    user_ids: Iterable[int] = (),
    amount: int | None = None,
    idempotency_key: str | None = None,
    description: str = "",
    batch_size: int = 2000,
    on_batch: Callable[[int], object] | None = None,
    expires_at: datetime | None = None,
    all_active_users: bool = False,
) -> GrantSummary:
    """Credit ``operation`` to many users, a batch per transaction, set-based.

    Idempotent: users who already have it (daily reward today, signup credit, or an entry with
    ``idempotency_key``) are skipped, so a rerun posts nothing new. Balance rows are locked in
    user-id order, so concurrent batches and single posts cannot deadlock. A batch that a
    unique index refuses (someone granted one of its users since the pre-check) is read again
    and written once more; a batch that fails otherwise is retried user by user to isolate the
    culprit. ``expires_at`` (default: the operation's lifetime) makes each grant a lot; users
    with expired lots get their EXPIRY entries first, as before any write.

    ``all_active_users`` (``user_ids`` then unused): every active user, found by the database
    itself a keyset page of those still lacking the grant at a time, so a rerun is one read that
    finds nobody instead of every id sent there and back. (With an idempotency key, a key used
    for another request must be told apart from a done grant, user by user: the id-list path.)
    """
    from core_ledger import selectors  # reads; imported here, as selectors import services.sql

    op = ledger.operation(operation)
    rule = ledger.rule(op)
    alias = ledger.db_alias
    if rule.direction is not Direction.CREDIT:
        raise ValidationFailed(f"Only credit operations can be granted in bulk; {op} is not.")
    if not rule.fixed and idempotency_key is None and rule.frequency.value == "any":
        raise ValidationFailed(
            f"A bulk grant of {op} needs an idempotency key so that a rerun posts nothing twice."
        )
    signed = signed_amount(ledger, op, rule, amount)
    description = clean_text(
        description or "", name="description", max_length=DESCRIPTION_MAX_LENGTH
    )
    key = clean_key(idempotency_key)
    lapse = clean_expires_at(ledger, op, rule, expires_at, privileged=True, now=timezone.now())
    # The same fingerprint entry_post computes, completed per user in SQL (it ends with the id).
    prefix = idempotency.fingerprint_prefix(
        actor_id=None,
        operation=op.value,
        amount=amount,
        description=description,
        metadata={},
        expires_at=expires_at,
    )
    fingerprint_sql = idempotency.sql_fingerprint("l.user_id") if key is not None else "''"
    entry_table, balance_table = sql.tables(ledger)
    lot_table = sql.quote_name(ledger.lot_model._meta.db_table)
    sql_lock = (
        f"SELECT user_id FROM {balance_table} WHERE user_id = ANY(%s::bigint[]) "
        "ORDER BY user_id FOR UPDATE"
    )
    user_model = get_user_model()
    user_table = sql.quote_name(user_model._meta.db_table)
    user_pk = sql.quote_name(user_model._meta.pk.column)
    summary = GrantSummary()
    sql_ensure = (
        f"INSERT INTO {balance_table} (user_id, balance, updated_at) "
        "SELECT u, 0, clock_timestamp() FROM unnest(%s::bigint[]) AS u ORDER BY u "
        "ON CONFLICT (user_id) DO NOTHING"
    )
    sql_grant = (
        f"WITH locked AS (SELECT user_id, balance FROM {balance_table} "
        "WHERE user_id = ANY(%s::bigint[]) ORDER BY user_id FOR UPDATE), "
        # The time is read after every row lock is held (count(*) drains `locked`), so an entry
        # never predates one it waited for: balance_at reads by time, the chain runs by id.
        "t AS (SELECT clock_timestamp() AS ts FROM (SELECT count(*) FROM locked) AS all_locked), "
        f"ins AS (INSERT INTO {entry_table} (user_id, operation, amount, balance_after, "
        "idempotency_key, request_fingerprint, description, metadata, created_at, day, "
        "expires_at) "
        f"SELECT l.user_id, %s, %s, l.balance + %s, %s, {fingerprint_sql}, %s, '{{}}'::jsonb, t.ts, "
        "(t.ts AT TIME ZONE 'UTC')::date, %s::timestamptz FROM locked l, t ORDER BY l.user_id "
        # No ON CONFLICT: the pre-check left out who has the grant, and a speculative insert
        # costs a grant 8% (an arbiter probe per unique index and a confirm record per row).
        # The unique indexes still refuse a duplicate: see grant_batch.
        "RETURNING id, user_id, amount, expires_at), "
        # An expiring grant makes a lot per entry and counts it on the balance row.
        f"lots AS (INSERT INTO {lot_table} (entry_id, user_id, amount, remaining, expires_at) "
        "SELECT id, user_id, amount, amount, expires_at FROM ins WHERE expires_at IS NOT NULL) "
        f"UPDATE {balance_table} AS b SET balance = b.balance + %s, updated_at = clock_timestamp(), "
        "lot_credits = b.lot_credits + CASE WHEN ins.expires_at IS NULL THEN 0 ELSE ins.amount END, "
        "next_expiry = least(b.next_expiry, ins.expires_at) "
        # The ANY() bound lets the planner read the batch's rows by primary key instead of
        # scanning the whole balance table once per batch.
        "FROM ins WHERE b.user_id = ins.user_id AND b.user_id = ANY(%s::bigint[])"
    )
    # Who in a batch still lacks the grant: a read on the unique index that would refuse it, so
    # a rerun locks and writes nothing. The index itself stays the guard (grant_batch).
    already: list[str] = []
    already_params: list[Any] = []
    if key is not None:
        already.append("e.idempotency_key = %s")
        already_params.append(key)
    if rule.frequency is Frequency.ONCE:
        already.append("e.operation = %s")
        already_params.append(op.value)
    elif rule.frequency is Frequency.DAILY:
        # Today read once (an init plan), so that it is part of the index condition.
        already.append(
            "(e.operation = %s AND e.day = (SELECT (clock_timestamp() AT TIME ZONE 'UTC')::date))"
        )
        already_params.append(op.value)

    # The same read tells which users still need a balance row (most have one since signup).
    # (A join bounded by ANY(), read on the primary key: an EXISTS per user was planned as a
    # hashed subplan over the whole balance table, 40 ms per batch at 100,000 users.)
    # And whether the user exists at all: a balance row for a missing user would only fail at
    # commit (the foreign key is deferred), inside a caller's transaction at the caller's commit.
    def lacking(user_ref: str) -> str:
        """The user lacks the grant: no entry on the unique index that would refuse it."""
        if not already:
            return "true"
        return (
            f"NOT EXISTS (SELECT 1 FROM {entry_table} e WHERE e.user_id = {user_ref} "
            f"AND ({' OR '.join(already)}))"
        )

    sql_pending = (
        "SELECT u, b.user_id IS NOT NULL, coalesce(b.next_expiry <= clock_timestamp(), false), "
        f"EXISTS (SELECT 1 FROM {user_table} usr WHERE usr.{user_pk} = u) "
        "FROM unnest(%s::bigint[]) AS u "
        f"LEFT JOIN {balance_table} b ON b.user_id = u AND b.user_id = ANY(%s::bigint[]) "
        f"WHERE {lacking('u')} ORDER BY u"
    )
    # The same over every active user, a keyset page at a time (parameters: after, page size).
    active = selectors.active_user_column()
    sql_pending_active = (
        f"SELECT usr.{user_pk}, b.user_id IS NOT NULL, "
        "coalesce(b.next_expiry <= clock_timestamp(), false), true "
        # The page's bound on the balance rows too: a merge join otherwise reads the balance
        # index from its start on every page (a 100,000-user grant read 550,000 entries).
        f"FROM {user_table} usr LEFT JOIN {balance_table} b ON b.user_id = usr.{user_pk} "
        "AND b.user_id > %s "
        f"WHERE usr.{user_pk} > %s"
        + (f" AND usr.{sql.quote_name(active)}" if active else "")
        + f" AND {lacking('usr.' + user_pk)} ORDER BY usr.{user_pk} LIMIT %s"
    )

    # Users whose key was used before for another request: counted as conflicts, not skips.
    sql_conflicts = (
        f"SELECT e.user_id FROM {entry_table} e WHERE e.user_id = ANY(%s::bigint[]) "
        "AND e.idempotency_key = %s AND e.request_fingerprint <> "
        + idempotency.sql_fingerprint("e.user_id")
    )

    def sort_out(group: list[int]) -> list[tuple[int, bool, bool]]:
        """Those in ``group`` (sorted, distinct) who still lack the grant, as (user, has a
        balance row, has expired lots); the rest counted in ``summary``: had it already, key
        used for another request, no such user."""
        with connections[alias].cursor() as cursor:
            ids = sql.bigint_array(group)
            cursor.execute(sql_pending, [ids, ids, *already_params])
            rows = cursor.fetchall()
            conflicted: set[int] = set()
            if key is not None and len(rows) < len(group):
                cursor.execute(sql_conflicts, [ids, key, prefix])
                conflicted = {user_id for (user_id,) in cursor.fetchall()}
        for user_id, _, _, exists in rows:
            if not exists:
                summary.failed += 1
                summary.errors.append(f"user {user_id}: no such user")
        summary.conflicts += len(conflicted)
        summary.errors.extend(
            f"user {user_id}: idempotency key used before for another request"
            for user_id in sorted(conflicted)
        )
        summary.skipped += len(group) - len(rows) - len(conflicted)
        return [(user, has_balance, due) for user, has_balance, due, exists in rows if exists]

    def write_batch(pending: list[tuple[int, bool, bool]]) -> int:
        """One transaction: the balance rows of those lacking one, the EXPIRY entries of those
        with expired lots (locks first, then a fresh snapshot), then the grant itself."""
        batch = [user_id for user_id, _, _ in pending]
        without_balance = [user_id for user_id, has_balance, _ in pending if not has_balance]
        expired = [user_id for user_id, _, has_expired in pending if has_expired]
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            if without_balance:
                cursor.execute(sql_ensure, [sql.bigint_array(without_balance)])
            if expired:
                swept = sql.bigint_array(expired)
                cursor.execute(sql_lock, [swept])
                cursor.execute(lots.sweep_sql(ledger), [swept])
            ids = sql.bigint_array(batch)
            cursor.execute(
                sql_grant,
                [
                    ids,
                    op.value,
                    signed,
                    signed,
                    key,
                    *([prefix] if key is not None else []),
                    description,
                    lapse,
                    signed,
                    ids,
                ],
            )
            return int(cursor.rowcount)

    def grant_batch(pending: list[tuple[int, bool, bool]]) -> None:
        """Write a batch; if a unique index refuses it (someone granted one of these users
        since the pre-check: a concurrent grant or post), read the batch again and write what
        is left, once; if that fails too, post user by user to isolate the culprit."""
        for attempt in (1, 2):
            if not pending:
                return
            try:
                granted = write_batch(pending)
            except DatabaseError as exc:
                if attempt == 1 and sql.is_unique_violation(exc):
                    pending = sort_out([user_id for user_id, _, _ in pending])
                    continue
                logger.warning(
                    "Bulk grant batch of %d failed; retrying one by one",
                    len(pending),
                    exc_info=True,
                )
                one_by_one([user_id for user_id, _, _ in pending])
                return
            summary.granted += granted
            summary.skipped += len(pending) - granted
            return

    def one_by_one(batch: list[int]) -> None:
        """Post each user of a failed batch alone, so that only the culprit fails."""
        for user_id in batch:
            try:
                result = entry_post(
                    ledger=ledger,
                    user_id=user_id,
                    operation=op,
                    amount=amount,
                    idempotency_key=key,
                    description=description,
                    expires_at=expires_at,
                )
            except AlreadyClaimed:
                summary.skipped += 1
            except IdempotencyKeyReused:
                summary.conflicts += 1
            except (LedgerError, DatabaseError) as exc:
                summary.failed += 1
                summary.errors.append(f"user {user_id}: {exc}")
            else:
                if result.replayed:
                    summary.skipped += 1
                else:
                    summary.granted += 1

    page = max(batch_size, PRECHECK_SIZE)
    if all_active_users and key is None:
        last = seen = 0
        while True:
            with connections[alias].cursor() as cursor:
                cursor.execute(sql_pending_active, [last, last, *already_params, page])
                pending = [(user, has_balance, due) for user, has_balance, due, _ in cursor]
            if not pending:
                break
            last, seen = pending[-1][0], seen + len(pending)
            for first in range(0, len(pending), batch_size):
                grant_batch(pending[first : first + batch_size])
            if on_batch is not None:
                on_batch(len(pending))
        # Everyone else had it already (the read above skipped them).
        rest = max(0, selectors.active_users().count() - seen)
        summary.skipped += rest
        if on_batch is not None:
            on_batch(rest)
        return summary
    if all_active_users:
        user_ids = selectors.active_user_ids(chunk_size=page)

    # The pre-check reads up to PRECHECK_SIZE users per round trip (a rerun is mostly these
    # reads); the writes still go batch_size users per transaction.
    for chunk in _chunks(user_ids, page):
        pending = sort_out(sorted(set(chunk)))
        for first in range(0, len(pending), batch_size):
            grant_batch(pending[first : first + batch_size])
        if on_batch is not None:
            on_batch(len(chunk))
    return summary

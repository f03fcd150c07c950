"""Holds: reserve a user's credits now for a debit, capture or release them later.

A hold writes no entry: the balance row's ``held`` grows by its amount, so ``balance`` stays and
what a debit may take (``balance - held``) shrinks. ``held <= balance`` is a CHECK, so no debit,
capture or sweep can spend reserved credits whatever the code above it does. A user with expiring
credits reserves from their lots in the order a spend draws (``lots.draw``): those credits leave
the lots' ``remaining`` while the hold is pending (they stay reserved even if their lot expires);
a capture keeps what it takes and gives the rest back, a release or an expiry gives all back, and
credits given back to a lot that has expired expire at once.

Every write here runs under the user's balance row lock, and the statement itself decides (a
data-modifying CTE that moves the hold, the lots, the balance row and, for a capture, appends the
entry: ``balance - held >= amount``, ``status = 'pending' AND expires_at > now``): never a
read-then-write in Python. In the common case (no lots involved, the caller placed the hold) a
placement, a capture and a release are each ONE statement, its own transaction in autocommit
(issue 16's shape): the capture's statement takes the balance row lock first, in a CTE the rest
waits for. Otherwise the lock is taken by :func:`lots.lock_balance` in a statement of its own and
the statements after it see a snapshot taken under it.

The balance row keeps ``next_hold_expiry`` (null with no pending hold, else at most the soonest
expiry among them: a one-statement capture or release leaves it as a lower bound), so a post by a
user whose holds are all unexpired stays the one conditional UPDATE of
:mod:`core_ledger.services.sql`; otherwise the slow path writes expired holds down first
(:func:`sweep_holds`, which also sets ``next_hold_expiry`` exactly).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from core_ledger.conf import app_settings
from core_ledger.exceptions import (
    HoldNotFound,
    HoldNotPending,
    IdempotencyKeyReused,
    InsufficientCredits,
    OperationNotAllowed,
    ValidationFailed,
)
from core_ledger.ledger import AnyLedger, Direction, Ledger, OpT
from core_ledger.models import DESCRIPTION_MAX_LENGTH, AbstractHold
from core_ledger.operations import SharedOperation
from core_ledger.services.lots import (
    BalanceState,
    Move,
    draw,
    lock_balance,
    nullable_bigint_array,
    open_lots,
    sweep,
    write_down,
)
from core_ledger.services.policy import Actor, actor_id, authorize, is_privileged
from core_ledger.services.validation import (
    clean_key,
    clean_metadata,
    clean_text,
    signed_amount,
)

Status = AbstractHold.Status

MIN_EXPIRES_IN = 1
MAX_EXPIRES_IN = 7 * 86400


@dataclass(frozen=True)
class HoldResult:
    """The hold a write produced or resolved, and whether it replays an earlier request."""

    hold: AbstractHold
    replayed: bool = False


@dataclass
class HoldsExpirySummary:
    """What :func:`holds_expire` did: holds written down, users, credits freed."""

    holds: int = 0
    users: int = 0
    credits: int = 0


# --- SQL ------------------------------------------------------------------------------------------


def _tables(ledger: AnyLedger) -> tuple[str, str, str, str]:
    from core_ledger.services.sql import quote_name, tables

    entry_table, balance_table = tables(ledger)
    return (
        entry_table,
        balance_table,
        quote_name(ledger.lot_model._meta.db_table),
        quote_name(ledger.hold_model._meta.db_table),
    )


def _lots_after(lot_table: str, user: str, returned: str) -> str:
    """SQL for the user's soonest lot expiry once ``returned`` (a CTE of lots given credits back,
    with ``expires_at``) is applied; the lots read are the statement's snapshot, before it."""
    return (
        f"(SELECT min(x.at) FROM (SELECT o.expires_at AS at FROM {lot_table} o "
        f"WHERE o.user_id = {user} AND o.remaining > 0 "
        f"UNION ALL SELECT r.expires_at FROM {returned} r) x)"
    )


def place_sql(ledger: AnyLedger, *, fast: bool) -> str:
    """One statement placing a hold.

    ``fast``: for a user without lots and without an expired hold; the conditional UPDATE of the
    balance row decides (``balance - held >= amount``) and no row means "take the slow path".
    Parameters: user, amount, expires_in (s), then the hold's operation, created_by, description,
    metadata, key, fingerprint. Slow (under the lock taken by :func:`lock_balance`, after the
    write-down): lot ids, deltas, lot_credits, next_expiry first, and the amount is not rechecked.
    Returns (id, created_at, expires_at).
    """
    _, balance_table, lot_table, hold_table = _tables(ledger)
    if fast:
        head = ""
        sets = ""
        guard = (
            "AND b.balance - b.held >= %s AND b.lot_credits = 0 "
            "AND (b.next_hold_expiry IS NULL OR b.next_hold_expiry > t.ts) "
        )
    else:
        head = (
            "mv AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS m(lot_id, delta)), "
            f"ul AS (UPDATE {lot_table} l SET remaining = l.remaining + mv.delta FROM mv "
            "WHERE l.entry_id = mv.lot_id), "
        )
        sets = "lot_credits = %s, next_expiry = %s, "
        guard = "AND %s > 0 "  # the amount, checked under the lock already
    return (
        f"WITH {head}t AS (SELECT clock_timestamp() AS ts), "
        f"bu AS (UPDATE {balance_table} b SET held = b.held + p.amount, {sets}"
        "next_hold_expiry = LEAST(b.next_hold_expiry, t.ts + p.lasts) "
        "FROM t, (SELECT %s::bigint AS user_id, %s::bigint AS amount, "
        "make_interval(secs => %s::double precision) AS lasts) p "
        f"WHERE b.user_id = p.user_id {guard}"
        "RETURNING b.user_id, p.amount, t.ts + p.lasts AS expires_at, t.ts) "
        f"INSERT INTO {hold_table} (user_id, operation, amount, status, expires_at, "
        "created_by_id, created_at, description, metadata, idempotency_key, request_fingerprint, "
        "resolution_fingerprint, lot_moves) "
        "SELECT bu.user_id, %s, bu.amount, 'pending', bu.expires_at, %s, bu.ts, %s, %s::jsonb, "
        "%s, %s, '', %s::jsonb FROM bu RETURNING id, created_at, expires_at"
    )


def _entry_sequence(ledger: AnyLedger) -> str:
    """The entries' id sequence as a SQL string literal (resolved once per process)."""
    return _sequence_literal(ledger.db_alias, ledger.entry_model._meta.db_table)


@functools.cache
def _sequence_literal(alias: str, table: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        name: str = cursor.fetchone()[0]
    return "'" + name.replace("'", "''") + "'"


def resolve_sql(ledger: AnyLedger, *, capture: bool, lots: bool) -> str:
    """One statement resolving a pending, unexpired hold: capture (posts its debit entry) or
    release; nothing at all if the hold is not pending or has expired (no row returned).

    The hold, the balance row, the lots and the entry move together: the hold's UPDATE decides,
    every other part reads from it. The capture entry's id is drawn from the entries' sequence in
    the hold's UPDATE, so the hold names its entry and the entry its hold in one statement.

    ``lots=False`` (a hold that reserved no lot credits) takes the balance row lock itself, first
    (``lk``; the clock and so the hold's UPDATE wait for it: every writer locks the balance row
    before a hold row), and keeps ``next_hold_expiry`` a lower bound (null once no hold is
    pending): a subquery here would read a snapshot taken before the lock. It also decides who
    may and how much (a hold it may not resolve is left alone, and the caller reads why).
    Parameters: hold id, [capture: amount or null for all], resolution key, fingerprint, hold id,
    amount or null, may resolve anyone's (bool), caller id, [capture: created_by].
    ``lots=True`` runs after :func:`lock_balance` and recomputes both expiries exactly.
    Parameters: [capture: amount], key, fingerprint, hold id, lot ids, deltas given back, credits
    given back, [capture: created_by, entry lot_moves JSON].
    Returns (entry id, balance_after, created_at, day, lot_credits, next_expiry, resolved_at,
    captured amount, then every column of the hold as resolved): the entry columns are null on a
    release.
    """
    entry_table, balance_table, lot_table, hold_table = _tables(ledger)
    status = Status.CAPTURED if capture else Status.RELEASED
    capture_sets = (
        "captured_amount = coalesce(%s::bigint, h.amount), "
        f"entry_id = nextval({_entry_sequence(ledger)}::regclass), "
        if capture
        else ""
    )
    if lots:
        head = "WITH t AS (SELECT clock_timestamp() AS ts), "
        allowed = ""
    else:
        # The hold's user never changes: reading it from the statement's snapshot is safe.
        head = (
            f"WITH lk AS (SELECT user_id FROM {balance_table} WHERE user_id = "
            f"(SELECT user_id FROM {hold_table} WHERE id = %s) FOR UPDATE), "
            "t AS (SELECT clock_timestamp() AS ts FROM lk), "
        )
        # Who may (the system, a post_any_entry holder, or the placer) and how much: a hold
        # the statement may not resolve is left alone, and the caller finds out why.
        allowed = (
            "AND h.lot_moves IS NULL AND h.amount >= coalesce(%s::bigint, 1) "
            "AND (%s::boolean OR h.created_by_id = %s) "
        )
    head += (
        f"h AS (UPDATE {hold_table} h SET status = '{status.value}', {capture_sets}"
        "resolved_at = t.ts, resolution_key = %s, resolution_fingerprint = %s FROM t "
        f"WHERE h.id = %s AND h.status = 'pending' AND h.expires_at > t.ts {allowed}"
        "RETURNING h.*), "
    )
    if lots:
        head += (
            "mv AS (SELECT m.* FROM unnest(%s::bigint[], %s::bigint[]) AS m(lot_id, delta) "
            "WHERE EXISTS (SELECT 1 FROM h)), "
            f"ul AS (UPDATE {lot_table} l SET remaining = l.remaining + mv.delta FROM mv "
            "WHERE l.entry_id = mv.lot_id RETURNING l.expires_at), "
        )
        sets = (
            "lot_credits = bb.lot_credits + %s, "
            f"next_expiry = {_lots_after(lot_table, 'bb.user_id', 'ul')}, "
            f"next_hold_expiry = (SELECT min(o.expires_at) FROM {hold_table} o "
            "WHERE o.user_id = bb.user_id AND o.status = 'pending' AND o.id <> h.id)"
        )
    else:
        sets = (
            "next_hold_expiry = CASE WHEN bb.held = h.amount THEN NULL ELSE bb.next_hold_expiry END"
        )
    balance_move = "bb.balance - h.captured_amount" if capture else "bb.balance"
    balance = (
        f"bu AS (UPDATE {balance_table} bb SET balance = {balance_move}, "
        f"held = bb.held - h.amount, {sets}"
        + (", updated_at = t.ts" if capture else "")
        + " FROM h, t WHERE bb.user_id = h.user_id "
        "RETURNING bb.balance, bb.lot_credits, bb.next_expiry)"
    )
    if not capture:
        return (
            head
            + balance
            + " SELECT NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::date, bu.lot_credits, "
            "bu.next_expiry, t.ts, h.captured_amount, h.* FROM bu, t, h"
        )
    return (
        head
        + balance
        + ", "
        + f"e AS (INSERT INTO {entry_table} (id, user_id, operation, amount, balance_after, "
        "idempotency_key, request_fingerprint, description, metadata, reverses_id, "
        "created_by_id, created_at, day, expires_at, lot_moves, hold_id) "
        "SELECT h.entry_id, h.user_id, h.operation, -h.captured_amount, bu.balance, NULL, '', "
        "h.description, h.metadata, NULL, %s, t.ts, (t.ts AT TIME ZONE 'UTC')::date, NULL, "
        + ("%s::jsonb" if lots else "NULL")
        + ", h.id FROM h, bu, t RETURNING id, balance_after, created_at, day) "
        "SELECT e.id, e.balance_after, e.created_at, e.day, bu.lot_credits, bu.next_expiry, t.ts, "
        "h.captured_amount, h.* FROM e, bu, t, h"
    )


def sweep_holds_sql(ledger: AnyLedger) -> str:
    """One statement that expires the given users' pending holds past their ``expires_at``.

    Their reserved lot credits go back to the lots; the balance rows lose the held amounts and
    learn their next hold expiry and lot expiry. The caller holds the users' balance row locks.
    Parameter: the users as a bigint[] literal. Returns one row per user written down: (user_id,
    balance, lot_credits, next_expiry, held, next_hold_expiry, holds, credits freed).
    """
    _, balance_table, lot_table, hold_table = _tables(ledger)
    return (
        "WITH t AS (SELECT clock_timestamp() AS ts), "
        f"due AS (UPDATE {hold_table} h SET status = '{Status.EXPIRED.value}', resolved_at = t.ts "
        "FROM t WHERE h.user_id = ANY(%s::bigint[]) AND h.status = 'pending' "
        "AND h.expires_at <= t.ts RETURNING h.id, h.user_id, h.amount, h.lot_moves), "
        "back AS (SELECT (m->>0)::bigint AS lot_id, sum(-(m->>1)::bigint) AS credits "
        "FROM due, jsonb_array_elements(due.lot_moves) m "
        "WHERE due.lot_moves IS NOT NULL AND m->>0 IS NOT NULL GROUP BY 1), "
        f"ul AS (UPDATE {lot_table} l SET remaining = l.remaining + back.credits FROM back "
        "WHERE l.entry_id = back.lot_id RETURNING l.user_id, l.expires_at, back.credits), "
        "totals AS (SELECT user_id, sum(amount) AS total, count(*) AS n FROM due GROUP BY user_id) "
        f"UPDATE {balance_table} b SET held = b.held - s.total, lot_credits = b.lot_credits + "
        "coalesce((SELECT sum(r.credits) FROM ul r WHERE r.user_id = b.user_id), 0), "
        "next_expiry = "
        + _lots_after(lot_table, "b.user_id", "(SELECT * FROM ul WHERE ul.user_id = b.user_id)")
        + ", "
        # The holds read here are the statement's snapshot (before `due`): the pending ones left
        # are exactly those that expire later.
        f"next_hold_expiry = (SELECT min(o.expires_at) FROM {hold_table} o "
        "WHERE o.user_id = b.user_id AND o.status = 'pending' AND o.expires_at > t.ts) "
        "FROM totals s, t WHERE b.user_id = s.user_id "
        "RETURNING b.user_id, b.balance, b.lot_credits, b.next_expiry, b.held, "
        "b.next_hold_expiry, s.n, s.total"
    )


def sweep_holds(cursor: Any, ledger: AnyLedger, state: BalanceState, user_id: int) -> BalanceState:
    """Expire the user's holds past their expiry under the held lock; the new state."""
    from core_ledger.services.sql import bigint_array

    cursor.execute(sweep_holds_sql(ledger), [bigint_array([user_id])])
    row = cursor.fetchone()
    if row is None:
        return state
    return BalanceState(
        balance=row[1],
        lot_credits=row[2],
        next_expiry=row[3],
        now=state.now,
        held=row[4],
        next_hold_expiry=row[5],
    )


# --- helpers --------------------------------------------------------------------------------------


def _one_statement(alias: str) -> AbstractContextManager[Any]:
    """Where one statement is a whole write: in autocommit it is its own transaction (no BEGIN
    or COMMIT round trip); inside a caller's transaction a savepoint keeps a refusal (a unique
    key taken, a CHECK) from breaking that transaction."""
    if connections[alias].in_atomic_block:
        return transaction.atomic(using=alias)
    return nullcontext()


def _fingerprint(parts: Mapping[str, Any]) -> str:
    text = json.dumps(dict(parts), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def clean_expires_in(expires_in: int | None) -> int:
    """Seconds the hold lasts: 1 s to 7 days; default ``SHARED_LEDGER_HOLD_EXPIRES_IN``."""
    if expires_in is None:
        return app_settings.HOLD_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise ValidationFailed(
            "expires_in must be a whole number of seconds.",
            expires_in=["A whole number is required."],
        )
    if not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        raise ValidationFailed(
            f"expires_in must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN} seconds.",
            expires_in=[f"From {MIN_EXPIRES_IN} second to 7 days ({MAX_EXPIRES_IN})."],
        )
    return expires_in


def effective_status(hold: AbstractHold, now: datetime) -> str:
    """The hold's status as callers see it: a pending hold past its expiry reads ``expired``
    before any sweep writes it down."""
    if hold.status == Status.PENDING and hold.expires_at <= now:
        return Status.EXPIRED.value
    return str(hold.status)


def _not_pending(hold: AbstractHold, now: datetime) -> HoldNotPending:
    status = effective_status(hold, now)
    return HoldNotPending(f"Hold {hold.pk} is {status}; it can no longer change.", status=status)


def _split(moves: list[list[Any]] | None, amount: int) -> tuple[list[Move], list[Move]]:
    """A hold's reservation split for a capture of ``amount``: the moves the entry keeps
    (soonest lots first) and the credits given back to each lot."""
    kept: list[Move] = []
    back: list[Move] = []
    need = amount
    for lot, delta in moves or []:
        reserved = -int(delta)
        take = min(need, reserved)
        need -= take
        if take:
            kept.append((lot, -take))
        if reserved - take and lot is not None:
            back.append((lot, reserved - take))
    return kept, back


# --- place ----------------------------------------------------------------------------------------


def hold_place(
    *,
    ledger: Ledger[Any, Any, OpT],
    user_id: int,
    operation: OpT,
    amount: int | None,
    actor: Actor = None,
    expires_in: int | None = None,
    idempotency_key: str | None = None,
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> HoldResult:
    """Reserve ``amount`` credits of ``user_id`` for a debit ``operation`` the caller may post.

    Writes no entry: ``available`` drops by ``amount``, ``balance`` stays. Refused with
    ``insufficient_credits`` beyond what is available. ``operation`` is a member of the ledger's
    operations class (``ledger.operation(text)`` parses outside strings). With ``idempotency_key`` a repeat of the
    same request replays the first hold (``replayed``); another request with the key is 422.
    """
    op = ledger.operation(operation)
    if op in (SharedOperation.REVERSAL, SharedOperation.EXPIRY):
        raise OperationNotAllowed(f"{op.value} entries are written by the ledger itself.")
    rule = ledger.rule(op)
    authorize(ledger=ledger, rule=rule, operation=op, actor=actor, user_id=user_id)
    if rule.direction is not Direction.DEBIT:
        raise ValidationFailed(
            f"{op.value} is not a debit; only debits can be held.",
            operation=["Only debit operations can be held."],
        )
    signed = signed_amount(ledger, op, rule, amount)
    description = clean_text(
        description or "", name="description", max_length=DESCRIPTION_MAX_LENGTH
    )
    clean_meta = clean_metadata(metadata)
    lasts = clean_expires_in(expires_in)
    key = clean_key(idempotency_key)
    created_by = actor_id(actor)
    fingerprint = ""
    model = ledger.hold_model
    if key is not None:
        fingerprint = _fingerprint(
            {
                "actor": created_by,
                "amount": amount,
                "description": description,
                "expires_in": expires_in,
                "metadata": clean_meta,
                "operation": op.value,
                "user": user_id,
            }
        )
        existing = model.objects.filter(user_id=user_id, idempotency_key=key).first()
        if existing is not None:
            return _replay_placement(existing, fingerprint)
    try:
        hold = _place(
            ledger,
            user_id=user_id,
            amount=-signed,
            lasts=lasts,
            values=[op.value, created_by, description, json.dumps(clean_meta), key, fingerprint],
        )
    except (DatabaseError, InsufficientCredits) as exc:
        if key is not None:  # a concurrent request with the key may have won: replay it
            existing = model.objects.filter(user_id=user_id, idempotency_key=key).first()
            if existing is not None:
                return _replay_placement(existing, fingerprint)
        if isinstance(exc, InsufficientCredits):
            from core_ledger.selectors import available_get, user_exists

            if not user_exists(ledger=ledger, user_id=user_id):
                raise ValidationFailed("No such user.", user=["No such user."]) from None
            exc.details["available"] = available_get(ledger=ledger, user_id=user_id)
            raise
        from core_ledger.services.sql import translate_db_error

        raise translate_db_error(exc, operation=op.value) from exc
    return HoldResult(hold=hold)


def _replay_placement(hold: AbstractHold, fingerprint: str) -> HoldResult:
    if hold.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    return HoldResult(hold=hold, replayed=True)


def _place(
    ledger: AnyLedger, *, user_id: int, amount: int, lasts: int, values: list[Any]
) -> AbstractHold:
    from core_ledger.services.sql import bigint_array, statement_cursor

    alias = ledger.db_alias
    lot_moves: list[list[Any]] | None = None
    with _one_statement(alias), statement_cursor(alias) as cursor:
        cursor.execute(
            place_sql(ledger, fast=True), [user_id, amount, lasts, amount, *values, None]
        )
        row = cursor.fetchone()
    if row is None:  # lots, an expired hold to write down, or not enough: under the lock
        with transaction.atomic(using=alias), statement_cursor(alias) as cursor:
            state = lock_balance(cursor, ledger, user_id)
            if state is None:
                raise InsufficientCredits(
                    f"The balance is too low to hold {amount}.", requested=amount
                )
            state = write_down(cursor, ledger, state, user_id)
            if state.available < amount:
                raise InsufficientCredits(
                    f"The balance is too low to hold {amount}.", requested=amount
                )
            lots = open_lots(cursor, ledger, user_id) if state.lot_credits else {}
            moves = draw(lots, amount)
            for lot, delta in moves:
                if lot is not None:
                    lots[lot][0] += delta
            lot_credits = sum(remaining for remaining, _ in lots.values())
            next_expiry = min(
                (at for remaining, at in lots.values() if remaining > 0), default=None
            )
            if any(lot is not None for lot, _ in moves):
                lot_moves = [[lot, delta] for lot, delta in moves]
            cursor.execute(
                place_sql(ledger, fast=False),
                [
                    nullable_bigint_array([lot for lot, _ in moves]),
                    bigint_array([delta for _, delta in moves]),
                    lot_credits,
                    next_expiry,
                    user_id,
                    amount,
                    lasts,
                    amount,
                    *values,
                    None if lot_moves is None else json.dumps(lot_moves),
                ],
            )
            row = cursor.fetchone()
    hold_id, created_at, expires_at = row
    operation, created_by, description, metadata_json, key, fingerprint = values
    hold = ledger.hold_model(
        id=hold_id,
        user_id=user_id,
        operation=operation,
        amount=amount,
        status=Status.PENDING,
        captured_amount=None,
        expires_at=expires_at,
        created_by_id=created_by,
        created_at=created_at,
        resolved_at=None,
        description=description,
        metadata=json.loads(metadata_json),
        idempotency_key=key,
        request_fingerprint=fingerprint,
        resolution_key=None,
        resolution_fingerprint="",
        lot_moves=lot_moves,
    )
    hold._state.adding = False
    hold._state.db = alias
    return hold


# --- capture and release --------------------------------------------------------------------------


def can_resolve(ledger: AnyLedger, actor: Actor, hold: AbstractHold) -> bool:
    """The caller who placed the hold, a ``post_any_entry`` holder, or the system (None)."""
    if actor is None:
        return True
    if not actor.is_authenticated:
        return False
    if hold.created_by_id is not None and actor.pk == hold.created_by_id:
        return True
    return is_privileged(ledger, actor)


def hold_capture(
    *,
    ledger: AnyLedger,
    hold_id: int,
    amount: int | None = None,
    actor: Actor = None,
    idempotency_key: str | None = None,
) -> HoldResult:
    """Post the hold's debit entry for its whole amount or a smaller ``amount`` (≥ 1); the rest
    is released. 409 ``hold_not_pending`` (``details.status``) once captured, released or expired.
    """
    return _resolve(
        ledger=ledger,
        hold_id=hold_id,
        capture=True,
        amount=amount,
        actor=actor,
        idempotency_key=idempotency_key,
    )


def hold_release(
    *,
    ledger: AnyLedger,
    hold_id: int,
    actor: Actor = None,
    idempotency_key: str | None = None,
) -> HoldResult:
    """Free the whole hold; writes no entry. 409 ``hold_not_pending`` once it left pending."""
    return _resolve(
        ledger=ledger,
        hold_id=hold_id,
        capture=False,
        amount=None,
        actor=actor,
        idempotency_key=idempotency_key,
    )


def _resolve(
    *,
    ledger: AnyLedger,
    hold_id: int,
    capture: bool,
    amount: int | None,
    actor: Actor,
    idempotency_key: str | None,
) -> HoldResult:
    """Capture or release: one statement decides under the user's balance row lock.

    It takes the lock, resolves the hold only if still pending and unexpired (and the caller
    placed it, and the amount fits), moves the balance row and, for a capture, appends the
    entry. Only when it resolves nothing is the hold read, to say why (404, 403, 400, 409, or a
    replay) or to take the slower path: a caller who did not place it (``post_any_entry``, whose
    permission look-up costs queries), or a hold that reserved lot credits (the lock, the
    statement, and the expiry of credits given back to lots that have expired).
    """
    from core_ledger.services.sql import statement_cursor, translate_db_error

    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or amount < 1
    ):
        raise ValidationFailed(
            "amount must be a whole number from 1.", amount=["A whole number from 1."]
        )
    key = clean_key(idempotency_key)
    caller = actor_id(actor)
    fingerprint = ""
    if key is not None:
        fingerprint = _fingerprint(
            {
                "action": "capture" if capture else "release",
                "actor": caller,
                "amount": amount,
                "hold": hold_id,
            }
        )
    row: Any = None
    try:
        with _one_statement(ledger.db_alias), statement_cursor(ledger.db_alias) as cursor:
            cursor.execute(
                resolve_sql(ledger, capture=capture, lots=False),
                [
                    hold_id,
                    *([amount] if capture else []),
                    key,
                    fingerprint,
                    hold_id,
                    amount,
                    actor is None,
                    caller,
                    *([caller] if capture else []),
                ],
            )
            row = cursor.fetchone()
            if row is not None:
                return HoldResult(hold=_hold_from_row(ledger, cursor.description[8:], row[8:]))
        # The statement resolved nothing: read the hold to say why, or take the slower path.
        hold = _read_hold(ledger, hold_id)
        if hold is None:
            raise HoldNotFound(f"No hold {hold_id} in ledger {ledger.label!r}.")
        if not can_resolve(ledger, actor, hold):
            raise OperationNotAllowed(
                "Only the caller who placed this hold (or a service account of this "
                f"ledger) may {'capture' if capture else 'release'} it."
            )
        if amount is not None and amount > hold.amount:
            raise ValidationFailed(
                f"amount must be between 1 and the hold's {hold.amount}.",
                amount=[f"Ensure this value is at most {hold.amount}, the hold's amount."],
            )
        if key is not None and hold.resolution_key == key:
            return _replay_resolution(hold, fingerprint)
        if hold.status != Status.PENDING or hold.expires_at <= timezone.now():
            raise _not_pending(hold, timezone.now())
        resolved = _resolve_locked(ledger, hold, capture, amount, caller, key, fingerprint)
        if resolved is None:  # resolved meanwhile, or expired: say which
            fresh = _read_hold(ledger, hold_id)
            assert fresh is not None
            if key is not None and fresh.resolution_key == key:  # a concurrent twin won
                return _replay_resolution(fresh, fingerprint)
            raise _not_pending(fresh, timezone.now())
    except IntegrityError as exc:
        raise translate_db_error(exc, operation="hold") from exc
    return HoldResult(hold=resolved)


def _resolve_locked(
    ledger: AnyLedger,
    hold: AbstractHold,
    capture: bool,
    amount: int | None,
    caller: int | None,
    key: str | None,
    fingerprint: str,
) -> AbstractHold | None:
    """The resolution once the hold is read and the caller allowed: under :func:`lock_balance`,
    the statement (with the lots the hold reserved), then the expiry of credits it gave back
    to lots that have expired. The hold as resolved, or None if it resolved nothing."""
    from core_ledger.services.sql import bigint_array, statement_cursor

    captured = hold.amount if amount is None else amount
    kept, back = _split(hold.lot_moves, captured if capture else 0)
    params: list[Any] = [captured] if capture else []
    params += [
        key,
        fingerprint,
        hold.pk,
        nullable_bigint_array([lot for lot, _ in back]),
        bigint_array([delta for _, delta in back]),
        sum(delta for _, delta in back),
    ]
    if capture:
        moves = [[lot, d] for lot, d in kept] if hold.lot_moves is not None else None
        params += [caller, None if moves is None else json.dumps(moves)]
    with transaction.atomic(using=ledger.db_alias), statement_cursor(ledger.db_alias) as cursor:
        state = lock_balance(cursor, ledger, hold.user_id)
        cursor.execute(resolve_sql(ledger, capture=capture, lots=True), params)
        row = cursor.fetchone()
        if row is None:
            return None
        resolved = _hold_from_row(ledger, cursor.description[8:], row[8:])
        lot_credits, next_expiry, resolved_at = row[4], row[5], row[6]
        if state is not None and lot_credits and next_expiry and next_expiry <= resolved_at:
            # Credits given back to a lot that has expired meanwhile expire at once.
            sweep(cursor, ledger, state, hold.user_id)
    return resolved


@functools.cache
def _hold_columns(model: type[AbstractHold]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hold model's attribute names and columns, in field order."""
    fields = model._meta.concrete_fields
    return tuple(f.attname for f in fields), tuple(f.column for f in fields)


def _read_hold(ledger: AnyLedger, hold_id: int) -> AbstractHold | None:
    """One hold by id as a model instance (a prepared statement; no lock), or None."""
    from core_ledger.services.sql import quote_name, statement_cursor

    hold_table = quote_name(ledger.hold_model._meta.db_table)
    with statement_cursor(ledger.db_alias) as cursor:
        cursor.execute(f"SELECT * FROM {hold_table} WHERE id = %s", [hold_id])
        row = cursor.fetchone()
        return None if row is None else _hold_from_row(ledger, cursor.description, row)


def _hold_from_row(ledger: AnyLedger, description: Any, row: Any) -> AbstractHold:
    """A hold model instance from a raw row whose columns ``description`` names."""
    model = ledger.hold_model
    names, columns = _hold_columns(model)
    by_column = dict(zip((d.name for d in description), row, strict=True))
    values = {name: by_column[column] for name, column in zip(names, columns, strict=True)}
    for name in ("metadata", "lot_moves"):  # jsonb comes back as text from a raw cursor
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    # Positional values in field order: Model.__init__'s fast path (as when loading a row).
    factory: Any = model
    hold: AbstractHold = factory(*[values[name] for name in names])
    hold._state.adding = False
    hold._state.db = ledger.db_alias
    return hold


def _replay_resolution(hold: AbstractHold, fingerprint: str) -> HoldResult:
    if hold.resolution_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    return HoldResult(hold=hold, replayed=True)


# --- expiry ---------------------------------------------------------------------------------------


def holds_expire(
    *, ledger: AnyLedger, batch_size: int = 1000, on_batch: Any = None
) -> HoldsExpirySummary:
    """Write down every pending hold past its ``expires_at`` (status ``expired``, credits given
    back), ``batch_size`` users per transaction, until none is due. Safe beside posts, holds and
    another run: each batch locks its users' balance rows in user order, then one statement
    expires what is due under those locks, so a hold is never expired twice nor one captured.
    Credits given back to lots that have expired are left for :func:`lots.lots_expire`, which
    ``ledger_expire`` runs next.
    """
    from core_ledger.services.sql import bigint_array

    _, balance_table, _, hold_table = _tables(ledger)
    alias = ledger.db_alias
    summary = HoldsExpirySummary()
    due_users = (
        f"SELECT DISTINCT user_id FROM {hold_table} WHERE status = 'pending' "
        "AND expires_at <= clock_timestamp() AND user_id > %s ORDER BY user_id LIMIT %s"
    )
    lock = (
        f"SELECT user_id FROM {balance_table} WHERE user_id = ANY(%s::bigint[]) "
        "ORDER BY user_id FOR UPDATE"
    )
    statement = sweep_holds_sql(ledger)
    after = 0
    while True:
        with connections[alias].cursor() as cursor:
            cursor.execute(due_users, [after, batch_size])
            users = [user_id for (user_id,) in cursor.fetchall()]
        if not users:
            return summary
        ids = bigint_array(users)
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(lock, [ids])
            cursor.execute(statement, [ids])
            swept = cursor.fetchall()
        for row in swept:
            summary.holds += int(row[6])
            summary.credits += int(row[7])
        summary.users += len(swept)
        after = users[-1]
        if on_batch is not None:
            on_batch(len(users))

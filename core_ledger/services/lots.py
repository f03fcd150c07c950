"""Expiring credits: lots, the order debits draw from them, and their expiry.

An expiring credit makes a lot holding its ``remaining`` credits. A debit draws from the user's
unexpired lots soonest ``expires_at`` first (ties: the oldest entry), then from credits that
never expire; each entry records the lots it moved in ``lot_moves`` (append-only, on the entry).
The balance row keeps ``lot_credits`` (credits left in lots) and ``next_expiry`` (the soonest
expiry among them), so a post by a user without lots stays the plain two-statement post and
"is anything expired?" is answered from the locked row.

Every function here runs under the user's balance row lock, taken by :func:`lock_balance` in a
statement of its own: the statements after it read the lots with a snapshot taken once the lock
is held, never a stale one. The common debit of a user holding lots does the same inside one
statement, the ledger's PL/pgSQL debit function (:func:`debit_function_sql`), whose queries each
take a new snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core_ledger.exceptions import CreditsAlreadyUsed, InsufficientCredits, ValidationFailed
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation

Move = tuple[int | None, int]
"""(lot entry id, or None for credits that never expire; signed credits moved)."""

EXPIRY_DESCRIPTION = "Credits expired"


@dataclass
class BalanceState:
    """The locked balance row, and the database's clock when it was read."""

    balance: int
    lot_credits: int
    next_expiry: datetime | None
    now: datetime
    held: int = 0
    next_hold_expiry: datetime | None = None

    @property
    def has_expired_lots(self) -> bool:
        return (
            self.lot_credits > 0 and self.next_expiry is not None and self.next_expiry <= self.now
        )

    @property
    def has_expired_holds(self) -> bool:
        return self.next_hold_expiry is not None and self.next_hold_expiry <= self.now

    @property
    def available(self) -> int:
        """What a debit may take (once expired holds and lots are written down)."""
        return self.balance - self.held


def _tables(ledger: AnyLedger) -> tuple[str, str, str]:
    from core_ledger.services.sql import quote_name, tables

    entry_table, balance_table = tables(ledger)
    return entry_table, balance_table, quote_name(ledger.lot_model._meta.db_table)


def nullable_bigint_array(values: Sequence[int | None]) -> str:
    """A ``bigint[]`` literal that may hold NULLs (one parameter, as ``bigint_array``)."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def lock_balance(cursor: Any, ledger: AnyLedger, user_id: int) -> BalanceState | None:
    """Lock the user's balance row (``FOR UPDATE``) and read it; None when it does not exist."""
    _, balance_table, _ = _tables(ledger)
    cursor.execute(
        f"SELECT balance, lot_credits, next_expiry, clock_timestamp(), held, next_hold_expiry "
        f"FROM {balance_table} WHERE user_id = %s FOR UPDATE",
        [user_id],
    )
    row = cursor.fetchone()
    return None if row is None else BalanceState(*row)


def write_down(cursor: Any, ledger: AnyLedger, state: BalanceState, user_id: int) -> BalanceState:
    """Under the held lock: expire the user's pending holds past their ``expires_at`` (their
    lot credits go back to the lots), then write down expired lots; the new state."""
    if state.has_expired_holds:
        from core_ledger.services.holds import sweep_holds

        state = sweep_holds(cursor, ledger, state, user_id)
    if state.has_expired_lots:
        state = sweep(cursor, ledger, state, user_id)
    return state


def sweep_sql(ledger: AnyLedger) -> str:
    """One statement that writes the EXPIRY entries of the given users' expired lots.

    Per user, an EXPIRY entry per expired lot (soonest first) continues the ``balance_after``
    chain; the lots are emptied; the balance row loses what expired and learns its next expiry.
    The caller holds the users' balance row locks. Parameter: the users, as a bigint[] literal.
    Returns one row per user swept: (user_id, balance, lot_credits, next_expiry, entries,
    credits expired).
    """
    entry_table, balance_table, lot_table = _tables(ledger)
    return (
        "WITH t AS (SELECT clock_timestamp() AS ts), "
        "due AS (SELECT l.entry_id, l.user_id, l.remaining, l.expires_at "
        f"FROM {lot_table} l, t WHERE l.user_id = ANY(%s::bigint[]) AND l.remaining > 0 "
        "AND l.expires_at <= t.ts), "
        "chain AS (SELECT d.*, b.balance - sum(d.remaining) OVER "
        "(PARTITION BY d.user_id ORDER BY d.expires_at, d.entry_id) AS balance_after "
        f"FROM due d JOIN {balance_table} b ON b.user_id = d.user_id), "
        f"ins AS (INSERT INTO {entry_table} (user_id, operation, amount, balance_after, "
        "idempotency_key, request_fingerprint, description, metadata, created_at, day, lot_moves) "
        f"SELECT c.user_id, '{SharedOperation.EXPIRY.value}', -c.remaining, c.balance_after, NULL, "
        f"'', '{EXPIRY_DESCRIPTION}', '{{}}'::jsonb, t.ts, (t.ts AT TIME ZONE 'UTC')::date, "
        "jsonb_build_array(jsonb_build_array(c.entry_id, -c.remaining)) "
        "FROM chain c, t ORDER BY c.user_id, c.expires_at, c.entry_id RETURNING user_id), "
        f"emptied AS (UPDATE {lot_table} l SET remaining = 0 FROM due d "
        "WHERE l.entry_id = d.entry_id), "
        "totals AS (SELECT user_id, sum(remaining) AS total, count(*) AS n FROM due GROUP BY user_id) "
        f"UPDATE {balance_table} b SET balance = b.balance - s.total, "
        "lot_credits = b.lot_credits - s.total, updated_at = t.ts, "
        # The lots read here are the statement's snapshot (before `emptied`): the ones left
        # are exactly those that expire later.
        f"next_expiry = (SELECT min(o.expires_at) FROM {lot_table} o WHERE o.user_id = b.user_id "
        "AND o.remaining > 0 AND o.expires_at > t.ts) "
        "FROM totals s, t WHERE b.user_id = s.user_id "
        "RETURNING b.user_id, b.balance, b.lot_credits, b.next_expiry, s.n, s.total"
    )


def sweep(cursor: Any, ledger: AnyLedger, state: BalanceState, user_id: int) -> BalanceState:
    """Write down the user's expired lots (EXPIRY entries) under the held lock; the new state."""
    from core_ledger.services.sql import bigint_array

    cursor.execute(sweep_sql(ledger), [bigint_array([user_id])])
    row = cursor.fetchone()
    if row is None:
        return state
    return BalanceState(
        balance=row[1],
        lot_credits=row[2],
        next_expiry=row[3],
        now=state.now,
        held=state.held,
        next_hold_expiry=state.next_hold_expiry,
    )


def open_lots(
    cursor: Any, ledger: AnyLedger, user_id: int, also: Sequence[int] = ()
) -> dict[int, list[Any]]:
    """The user's lots with credits left, soonest first, plus the lots ``also`` names:
    ``{entry id: [remaining, expires_at]}`` (insertion order is the draw order)."""
    _, _, lot_table = _tables(ledger)
    from core_ledger.services.sql import bigint_array

    cursor.execute(
        f"SELECT entry_id, remaining, expires_at FROM {lot_table} WHERE user_id = %s "
        "AND (remaining > 0 OR entry_id = ANY(%s::bigint[])) ORDER BY expires_at, entry_id",
        [user_id, bigint_array(list(also))],
    )
    return {entry_id: [remaining, expires_at] for entry_id, remaining, expires_at in cursor}


def draw(lots: dict[int, list[Any]], amount: int) -> list[Move]:
    """The moves that pay a debit of ``amount`` credits: soonest-expiring lots first, then
    credits that never expire (``None``)."""
    need = amount
    moves: list[Move] = []
    for entry_id, (remaining, _) in lots.items():
        if need == 0:
            break
        if remaining > 0:
            take = min(need, remaining)
            moves.append((entry_id, -take))
            need -= take
    if need:
        moves.append((None, -need))
    return moves


def take_back(lots: dict[int, list[Any]], amount: int, *, never: int) -> list[Move]:
    """The moves that take back ``amount`` credits that never expired when granted (reversing a
    credit without expiry): from the credits that never expire first (``never`` of them), then
    from the lots that expire last, so the user never ends up with longer-lived credits."""
    take = min(amount, max(never, 0))
    moves: list[Move] = [(None, -take)] if take else []
    need = amount - take
    for entry_id, (remaining, _) in reversed(list(lots.items())):
        if need == 0:
            break
        if remaining > 0:
            part = min(need, remaining)
            moves.append((entry_id, -part))
            need -= part
    return moves


def write_sql(ledger: AnyLedger) -> str:
    """One statement: apply the moves to the lots, set the balance row, append the entry and,
    for an expiring credit, create its lot. Returns (id, balance_after, created_at, day)."""
    entry_table, balance_table, lot_table = _tables(ledger)
    return (
        "WITH mv AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS m(lot_id, delta)), "
        f"ul AS (UPDATE {lot_table} l SET remaining = l.remaining + mv.delta FROM mv "
        "WHERE l.entry_id = mv.lot_id), "
        f"b AS (UPDATE {balance_table} SET balance = balance + %s, lot_credits = %s, "
        "next_expiry = %s, updated_at = clock_timestamp() WHERE user_id = %s RETURNING balance), "
        "t AS (SELECT clock_timestamp() AS ts), "
        f"e AS (INSERT INTO {entry_table} (user_id, operation, amount, balance_after, "
        "idempotency_key, request_fingerprint, description, metadata, reverses_id, created_by_id, "
        "created_at, day, expires_at, lot_moves) "
        "SELECT %s, %s, %s, b.balance, %s, %s, %s, %s::jsonb, %s, %s, t.ts, "
        "(t.ts AT TIME ZONE 'UTC')::date, %s, %s::jsonb FROM b, t "
        "RETURNING id, user_id, amount, balance_after, created_at, day, expires_at), "
        f"nl AS (INSERT INTO {lot_table} (entry_id, user_id, amount, remaining, expires_at) "
        "SELECT id, user_id, amount, amount, expires_at FROM e WHERE expires_at IS NOT NULL) "
        "SELECT id, balance_after, created_at, day FROM e"
    )


DRAWN = "ok"
"""Status of the debit statement when it wrote the debit."""


def debit_function_name(ledger: AnyLedger) -> str:
    """The ledger's debit function (created by ``migrate``: ``core_ledger.signals.
    install_ledger_functions``), named after its entry table, within PostgreSQL's 63 bytes."""
    table: str = ledger.entry_model._meta.db_table
    return (table + "_debit")[:63]


DEBIT_FUNCTION_ARGS = (
    "p_user bigint, p_need bigint, p_operation text, p_key text, p_fingerprint text, "
    "p_description text, p_metadata jsonb, p_reverses bigint, p_created_by bigint"
)
"""The debit function's arguments; a function of that name with others is an older version."""


def debit_function_sql(ledger: AnyLedger) -> str:
    """``CREATE OR REPLACE FUNCTION`` of the debit the plain conditional ``UPDATE`` did not
    move (lots to draw from, too few credits, or something expired): one statement, one round
    trip, after the post's own (:func:`core_ledger.services.sql.write`).

    Being VOLATILE PL/pgSQL, each of its queries takes a new snapshot, so the lots it reads
    after locking the balance row are the lots as they are under that lock, never older (a
    plain data-modifying CTE reads them with the snapshot its statement started with, before
    the lock it waited for). Its plans are cached per session.

    Returns no row when the user has no balance row, else one row (status, id, balance_after,
    created_at, day, lot_moves, balance): status ``ok`` when it drew, moved the balance row and
    appended the entry (its columns); ``sweep`` when expired lots or holds must be written down
    first (the caller's slow path); ``short`` (with the balance) when the credits no hold
    reserves are too few. It writes nothing unless it returns ``ok``.
    """
    entry_table, balance_table, lot_table = _tables(ledger)
    return f"""
CREATE OR REPLACE FUNCTION {debit_function_name(ledger)}({DEBIT_FUNCTION_ARGS})
RETURNS TABLE (status text, id bigint, balance_after bigint, created_at timestamptz, day date,
               lot_moves jsonb, balance bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    b record;
    lot record;
    need bigint := p_need;
    take bigint;
    drawn bigint := 0;
    moves jsonb := '[]';
    soonest timestamptz;
    ts timestamptz;
BEGIN
    -- Every writer of this user's lots takes this lock first: from here on, the queries below
    -- see the lots as the last writer left them.
    SELECT bl.balance, bl.held, bl.lot_credits, bl.next_expiry, bl.next_hold_expiry INTO b
        FROM {balance_table} bl WHERE bl.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    ts := clock_timestamp();
    IF (b.lot_credits > 0 AND b.next_expiry <= ts) OR b.next_hold_expiry <= ts THEN
        status := 'sweep';
        RETURN NEXT;
        RETURN;
    END IF;
    IF b.balance - b.held < p_need THEN
        status := 'short';
        balance := b.balance;  -- for the refusal's details
        RETURN NEXT;
        RETURN;
    END IF;
    IF b.lot_credits > 0 THEN
        -- Soonest expiry first, ties by the oldest entry (lots.draw's order); soonest ends as
        -- the expiry of the first lot that keeps credits.
        FOR lot IN SELECT l.entry_id, l.remaining, l.expires_at FROM {lot_table} l
                WHERE l.user_id = p_user AND l.remaining > 0 ORDER BY l.expires_at, l.entry_id
        LOOP
            IF need = 0 THEN
                soonest := lot.expires_at;
                EXIT;
            END IF;
            take := least(need, lot.remaining);
            -- A keyed UPDATE per lot: cheaper than one UPDATE joined to arrays of the ids
            -- and amounts after the loop (server CPU of a 3-lot draw: 0.37-0.41 against
            -- 0.44-0.47 ms).
            UPDATE {lot_table} l SET remaining = l.remaining - take WHERE l.entry_id = lot.entry_id;
            moves := moves || jsonb_build_array(jsonb_build_array(lot.entry_id, -take));
            need := need - take;
            drawn := drawn + take;
            IF take < lot.remaining THEN
                soonest := lot.expires_at;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    UPDATE {balance_table} bl SET balance = bl.balance - p_need,
            lot_credits = bl.lot_credits - drawn, next_expiry = soonest, updated_at = ts
        WHERE bl.user_id = p_user RETURNING bl.balance INTO balance;
    IF drawn > 0 AND need > 0 THEN
        -- What credits that never expire paid, last (as lots.draw lists it).
        moves := moves || jsonb_build_array(jsonb_build_array(NULL, -need));
    END IF;
    INSERT INTO {entry_table} AS e (user_id, operation, amount, idempotency_key,
            request_fingerprint, description, metadata, reverses_id, created_by_id,
            balance_after, created_at, day, lot_moves)
        VALUES (p_user, p_operation, -p_need, p_key, p_fingerprint, p_description, p_metadata,
            p_reverses, p_created_by, balance, ts, (ts AT TIME ZONE 'UTC')::date,
            CASE WHEN drawn > 0 THEN moves END)
        RETURNING e.id, e.balance_after, e.created_at, e.day, e.lot_moves
        INTO id, balance_after, created_at, day, lot_moves;
    status := '{DRAWN}';
    RETURN NEXT;
END
$fn$;
"""


@dataclass
class Written:
    """What the lot-aware write produced, for the entry instance."""

    id: int
    balance_after: int
    created_at: datetime
    day: Any
    lot_moves: list[list[int | None]] | None


def write_with_lots(
    cursor: Any,
    ledger: AnyLedger,
    *,
    user_id: int,
    amount: int,
    expires_at: datetime | None,
    forced_moves: list[Move] | None,
    entry_params: list[Any],
    ensure_user: str,
) -> Written:
    """The post under the row lock when lots are involved (or the fast path could not decide):
    sweep what expired, draw or return credits, write the entry, and expire again at once what a
    reversal gave back to a lot that has expired.

    ``entry_params``: user_id, operation, amount, idempotency_key, fingerprint, description,
    metadata JSON, reverses_id, created_by_id, in the order of :func:`write_sql`.
    ``ensure_user``: the statement that creates a missing balance row for an existing user.
    """
    state = lock_balance(cursor, ledger, user_id)
    if state is None:
        if amount < 0:
            raise InsufficientCredits(
                f"The balance is too low for a debit of {-amount}.", requested=-amount
            )
        cursor.execute(ensure_user, [user_id, user_id])
        state = lock_balance(cursor, ledger, user_id)
        if state is None:
            raise ValidationFailed("No such user.", user=["No such user."])
    state = write_down(cursor, ledger, state, user_id)
    if amount < 0 and state.available + amount < 0:
        # Credits reserved by pending holds cannot be spent (held <= balance is a CHECK too).
        raise InsufficientCredits(
            f"The balance is too low for a debit of {-amount}.", requested=-amount
        )
    named = [lot for lot, _ in forced_moves or [] if lot is not None]
    returned = [lot for lot, delta in forced_moves or [] if lot is not None and delta > 0]
    lots = open_lots(cursor, ledger, user_id, also=named) if state.lot_credits or named else {}
    if forced_moves is not None:
        moves = []
        for lot, delta in forced_moves:
            if lot is None and delta < 0:
                # Taking back credits that never expire: those first, then what they lack from
                # the lots that expire last (the reverse of the draw order).
                moves.extend(take_back(lots, -delta, never=state.balance - state.lot_credits))
                continue
            if lot is not None and delta < 0 and lots.get(lot, [0])[0] + delta < 0:
                raise CreditsAlreadyUsed(
                    f"Lot {lot} has {lots.get(lot, [0])[0]} of its credits left; only a whole "
                    "lot can be taken back.",
                    entry=lot,
                )
            moves.append((lot, delta))
    elif amount < 0:
        moves = draw(lots, -amount)
    else:
        moves = []
    for lot, delta in moves:
        if lot is not None:
            lots[lot][0] += delta
    if expires_at is not None:
        lots[0] = [amount, expires_at]  # the new lot (id unknown yet): counts like the others
    lot_credits = sum(remaining for remaining, _ in lots.values())
    next_expiry = min((at for remaining, at in lots.values() if remaining > 0), default=None)
    touched = any(lot is not None for lot, _ in moves)
    lot_moves = [[lot, delta] for lot, delta in moves] if touched else None
    lot_ids = [lot for lot, _ in moves]
    deltas = [delta for _, delta in moves]
    from core_ledger.services.sql import bigint_array

    cursor.execute(
        write_sql(ledger),
        [
            nullable_bigint_array(lot_ids),
            bigint_array(deltas),
            amount,
            lot_credits,
            next_expiry,
            user_id,
            *entry_params,
            expires_at,
            json.dumps(lot_moves) if lot_moves is not None else None,
        ],
    )
    entry_id, balance_after, created_at, day = cursor.fetchone()
    if any(lots[lot][1] <= state.now for lot in returned if lots[lot][0] > 0):
        # Credits given back to a lot that has expired meanwhile expire again at once.
        sweep(cursor, ledger, state, user_id)
    return Written(entry_id, balance_after, created_at, day, lot_moves)


@dataclass
class ExpirySummary:
    """What ``lots_expire`` did: lots written down, EXPIRY entries, users, credits expired."""

    lots: int = 0
    users: int = 0
    credits: int = 0


def lots_expire(
    *, ledger: AnyLedger, batch_size: int = 1000, on_batch: Any = None
) -> ExpirySummary:
    """Write an EXPIRY entry for every lot whose ``expires_at`` has passed, ``batch_size`` users
    per transaction, until none is due. Safe beside posts and another ``lots_expire``: each
    batch locks its users' balance rows (in user order, as every writer does), then sweeps with
    a snapshot taken under the locks, so a lot is never expired twice nor one already spent.
    """
    from django.db import connections, transaction

    from core_ledger.services.sql import bigint_array

    _, balance_table, lot_table = _tables(ledger)
    alias = ledger.db_alias
    summary = ExpirySummary()
    due_users = (
        f"SELECT DISTINCT user_id FROM {lot_table} WHERE remaining > 0 "
        "AND expires_at <= clock_timestamp() AND user_id > %s ORDER BY user_id LIMIT %s"
    )
    lock = (
        f"SELECT user_id FROM {balance_table} WHERE user_id = ANY(%s::bigint[]) "
        "ORDER BY user_id FOR UPDATE"
    )
    sweep_statement = sweep_sql(ledger)
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
            cursor.execute(sweep_statement, [ids])
            swept = cursor.fetchall()
        for _, _, _, _, count, credits in swept:
            summary.lots += int(count)
            summary.credits += int(credits)
        summary.users += len(swept)
        after = users[-1]
        if on_batch is not None:
            on_batch(len(users))

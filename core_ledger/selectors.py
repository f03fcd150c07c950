"""Reads: balances now and at a past moment, entry queries, and the ledger's invariants.

A balance is one indexed row read whatever the history length; a past balance is the
``balance_after`` of the user's last entry at that moment, one read on the (user, created_at) index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connections
from django.db.models import BooleanField, Count, Model, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core_ledger.ledger import AnyLedger, BalanceT, EntryT, Ledger, registry
from core_ledger.models import AbstractHold
from core_ledger.services.sql import quote_name, tables


def balance_get(*, ledger: AnyLedger, user_id: int) -> int:
    """The user's current balance (0 if they never had an entry)."""
    row = (
        ledger.balance_model.objects.filter(user_id=user_id)
        .values_list("balance", flat=True)
        .first()
    )
    return int(row or 0)


def user_exists(*, ledger: AnyLedger, user_id: int) -> bool:
    """Whether ``user_id`` is a user (read where the ledger writes, so a new user is seen)."""
    return get_user_model()._default_manager.using(ledger.db_alias).filter(pk=user_id).exists()


def balance_at(*, ledger: AnyLedger, user_id: int, at: datetime) -> int:
    """The user's balance at moment ``at``: the balance after their last entry up to then."""
    row = (
        ledger.entry_model.objects.filter(user_id=user_id, created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return int(row or 0)


@dataclass(frozen=True)
class ExpiringLot:
    """Credits of one lot that are still spendable, and when they lapse."""

    entry: int
    amount: int
    expires_at: datetime


@dataclass(frozen=True)
class BalanceSnapshot:
    """A user's balance now or at a past moment, and when it last moved (None: never).

    ``available`` is what the user can spend now: ``balance`` minus ``held`` (credits reserved by
    pending, unexpired holds) minus credits whose lots have expired but whose EXPIRY entry is not
    written yet (including credits an expired hold gives back to an expired lot). ``expiring``: the unexpired lots with
    credits left, soonest first (at most ``EXPIRING_SHOWN``). At a past moment both follow the
    entries: ``available`` is the balance then and ``expiring`` is empty.
    """

    user_id: int
    balance: int
    updated_at: datetime | None
    available: int = 0
    expiring: tuple[ExpiringLot, ...] = ()
    held: int = 0


EXPIRING_SHOWN = 100


def balance_snapshot(
    *, ledger: AnyLedger, user_id: int, at: datetime | None = None
) -> BalanceSnapshot:
    """The balance with its last-moved time: the balance row now, or the last entry up to ``at``.

    The API shows both values together, so they come from one read of one row; a user holding
    lots costs one more read, bounded by their open lots, never by history.
    """
    if at is not None:
        row = (
            ledger.entry_model.objects.filter(user_id=user_id, created_at__lte=at)
            .order_by("-created_at", "-id")
            .values_list("balance_after", "created_at")
            .first()
        )
        if row is None:
            return BalanceSnapshot(user_id=user_id, balance=0, updated_at=None)
        return BalanceSnapshot(user_id, int(row[0]), row[1], available=int(row[0]))
    now_row = (
        ledger.balance_model.objects.filter(user_id=user_id)
        .values_list("balance", "updated_at", "lot_credits", "held", "next_hold_expiry")
        .first()
    )
    if now_row is None:
        return BalanceSnapshot(user_id=user_id, balance=0, updated_at=None)
    balance, updated_at, lot_credits = int(now_row[0]), now_row[1], int(now_row[2])
    held, next_hold_expiry = int(now_row[3]), now_row[4]
    lapsed = 0  # credits expired holds give back to lots that have expired
    if next_hold_expiry is not None and next_hold_expiry <= timezone.now():
        # Holds past their expiry count as released before any sweep writes them down.
        held, lapsed = _held_now(ledger=ledger, user_id=user_id)
    if not lot_credits and not lapsed:
        return BalanceSnapshot(user_id, balance, updated_at, available=balance - held, held=held)
    expired, expiring = _open_lots(ledger=ledger, user_id=user_id)
    return BalanceSnapshot(
        user_id,
        balance,
        updated_at,
        available=balance - held - expired - lapsed,
        expiring=expiring,
        held=held,
    )


def _held_now(*, ledger: AnyLedger, user_id: int) -> tuple[int, int]:
    """Credits in the user's pending, unexpired holds; and what their expired holds reserved
    from lots that have expired too (those credits lapse when the hold is written down)."""
    hold_table = quote_name(ledger.hold_model._meta.db_table)
    lot_table = quote_name(ledger.lot_model._meta.db_table)
    with connections[ledger.db_alias].cursor() as cursor:
        cursor.execute(
            "WITH t AS (SELECT clock_timestamp() AS ts) "
            f"SELECT (SELECT coalesce(sum(amount), 0) FROM {hold_table}, t WHERE user_id = %s "
            "AND status = 'pending' AND expires_at > t.ts), "
            "(SELECT coalesce(sum(-(m->>1)::bigint), 0) "
            f"FROM {hold_table} h CROSS JOIN t CROSS JOIN jsonb_array_elements(h.lot_moves) m "
            f"JOIN {lot_table} l ON l.entry_id = (m->>0)::bigint "
            "WHERE h.user_id = %s AND h.status = 'pending' AND h.expires_at <= t.ts "
            "AND h.lot_moves IS NOT NULL AND l.expires_at <= t.ts)",
            [user_id, user_id],
        )
        held, lapsed = cursor.fetchone()
    return int(held), int(lapsed)


def _open_lots(*, ledger: AnyLedger, user_id: int) -> tuple[int, tuple[ExpiringLot, ...]]:
    """Credits in the user's expired, not yet written-down lots, and the first unexpired lots."""
    lot_table = quote_name(ledger.lot_model._meta.db_table)
    with connections[ledger.db_alias].cursor() as cursor:
        cursor.execute(
            "WITH t AS (SELECT clock_timestamp() AS ts) "
            f"SELECT (SELECT coalesce(sum(remaining), 0) FROM {lot_table}, t "
            "WHERE user_id = %s AND remaining > 0 AND expires_at <= t.ts), "
            f"(SELECT coalesce(json_agg(json_build_array(entry_id, remaining, expires_at) "
            f"ORDER BY expires_at, entry_id), '[]') FROM (SELECT entry_id, remaining, expires_at "
            f"FROM {lot_table}, t WHERE user_id = %s AND remaining > 0 AND expires_at > t.ts "
            "ORDER BY expires_at, entry_id LIMIT %s) o)",
            [user_id, user_id, EXPIRING_SHOWN],
        )
        expired, lots = cursor.fetchone()
    if isinstance(lots, str):
        lots = json.loads(lots)
    return int(expired), tuple(
        ExpiringLot(entry=int(e), amount=int(r), expires_at=parse_datetime(str(at)) or at)
        for e, r, at in lots
    )


def available_get(*, ledger: AnyLedger, user_id: int) -> int:
    """What the user can spend now (see :class:`BalanceSnapshot`)."""
    return balance_snapshot(ledger=ledger, user_id=user_id).available


def balance_list(*, ledger: Ledger[Any, BalanceT, Any]) -> QuerySet[BalanceT]:
    """Every balance row of ``ledger`` (one per user who ever had an entry)."""
    return ledger.balance_model.objects.all()


def balances_for_user(*, user_id: int) -> dict[str, int]:
    """The user's balance in every registered ledger, by ledger label."""
    return {ledger.label: balance_get(ledger=ledger, user_id=user_id) for ledger in registry}


def entry_list(*, ledger: Ledger[EntryT, Any, Any], user_id: int | None = None) -> QuerySet[EntryT]:
    """Entries newest first; only ``user_id``'s when given."""
    qs = ledger.entry_model.objects.all().order_by("-id")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    return qs


HOLD_STATUSES = tuple(AbstractHold.Status.values)
HoldT = TypeVar("HoldT", bound=AbstractHold)


def hold_list(
    *,
    ledger: AnyLedger,
    user_id: int | None = None,
    status: str | None = None,
    seen_by: int | None = None,
) -> QuerySet[AbstractHold]:
    """Holds newest first; only ``user_id``'s when given; only those whose status (as callers
    see it: a pending hold past its expiry is ``expired``) is ``status`` when given; only those
    on ``seen_by``'s account or placed by them when given (what a caller without
    ``view_all_accounts`` may see)."""
    qs: QuerySet[AbstractHold] = ledger.hold_model.objects.all().order_by("-id")
    if user_id is not None:
        qs = qs.filter(user_id=user_id)
    if seen_by is not None:
        qs = qs.filter(Q(user_id=seen_by) | Q(created_by_id=seen_by))
    return qs if status is None else hold_status_filter(qs, status)


def hold_status_filter(qs: QuerySet[HoldT], status: str) -> QuerySet[HoldT]:
    """``qs`` narrowed to the holds whose status, as callers see it, is ``status``."""
    if status == AbstractHold.Status.PENDING:
        return qs.filter(status=status, expires_at__gt=Now())
    if status == AbstractHold.Status.EXPIRED:
        return qs.filter(
            Q(status=status) | Q(status=AbstractHold.Status.PENDING, expires_at__lte=Now())
        )
    return qs.filter(status=status)


@dataclass(frozen=True)
class Discrepancy:
    """One broken invariant found by :func:`ledger_check`."""

    ledger: str
    kind: str
    user_id: int | None
    entry_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"user {self.user_id}" if self.user_id is not None else ""
        if self.entry_id is not None:
            where += f" entry {self.entry_id}"
        return f"[{self.ledger}] {self.kind}: {where.strip()} — {self.detail}"


def _lot_checks(
    entry_table: str, balance_table: str, lot_table: str, hold_table: str
) -> list[tuple[str, str]]:
    """The expiring-credit invariants (lots and the moves recorded on entries)."""
    moves = (
        f"SELECT e.id AS entry_id, e.user_id, e.operation, e.created_at, (m->>0)::bigint AS lot, "
        f"(m->>1)::bigint AS delta FROM {entry_table} e, jsonb_array_elements(e.lot_moves) m "
        "WHERE e.lot_moves IS NOT NULL"
    )
    return [
        (
            "lot_out_of_bounds",
            f"SELECT user_id, entry_id, 'remaining ' || remaining || ' outside 0..' || amount "
            f"FROM {lot_table} WHERE remaining < 0 OR remaining > amount",
        ),
        (
            "lot_credits_mismatch",
            f"""
            SELECT coalesce(b.user_id, s.user_id), NULL::bigint,
                   'lot_credits ' || coalesce(b.lot_credits, 0) || ' != credits left in lots '
                   || coalesce(s.total, 0) || ' (balance ' || coalesce(b.balance, 0) || ')'
            FROM {balance_table} b
            FULL OUTER JOIN (SELECT user_id, sum(remaining) AS total, min(expires_at)
                             FILTER (WHERE remaining > 0) AS soonest
                             FROM {lot_table} GROUP BY user_id) s ON s.user_id = b.user_id
            WHERE coalesce(b.lot_credits, 0) <> coalesce(s.total, 0)
               OR coalesce(b.lot_credits, 0) > coalesce(b.balance, 0)
               OR b.next_expiry IS DISTINCT FROM s.soonest AND coalesce(s.total, 0) > 0
               OR b.next_expiry IS NOT NULL AND coalesce(s.total, 0) = 0
            """,
        ),
        (
            # remaining = amount - drawn - expired + given back, from the entries' own record.
            "lot_history_mismatch",
            f"""
            SELECT l.user_id, l.entry_id, 'remaining ' || l.remaining || ' != amount ' || l.amount
                   || ' + moves ' || coalesce(m.total, 0)
                   || ' + reserved by pending holds ' || coalesce(r.total, 0)
            FROM {lot_table} l LEFT JOIN (SELECT lot, sum(delta) AS total FROM ({moves}) mv
                                          WHERE lot IS NOT NULL GROUP BY lot) m
              ON m.lot = l.entry_id
            LEFT JOIN (SELECT (m->>0)::bigint AS lot, sum((m->>1)::bigint) AS total
                       FROM {hold_table} h, jsonb_array_elements(h.lot_moves) m
                       WHERE h.status = 'pending' AND h.lot_moves IS NOT NULL
                         AND m->>0 IS NOT NULL GROUP BY 1) r
              ON r.lot = l.entry_id
            WHERE l.remaining <> l.amount + coalesce(m.total, 0) + coalesce(r.total, 0)
            """,
        ),
        (
            "moves_mismatch",
            f"""
            SELECT e.user_id, e.id, 'lot moves add up to ' || sum((m->>1)::bigint) || ', not '
                   || e.amount
            FROM {entry_table} e, jsonb_array_elements(e.lot_moves) m
            WHERE e.lot_moves IS NOT NULL GROUP BY e.user_id, e.id, e.amount
            HAVING sum((m->>1)::bigint) <> e.amount
            """,
        ),
        (
            "foreign_lot_move",
            f"""
            WITH mv AS MATERIALIZED ({moves})
            SELECT mv.user_id, mv.entry_id, 'moves lot ' || mv.lot || ' of another user or none'
            FROM mv LEFT JOIN {lot_table} l ON l.entry_id = mv.lot
            WHERE mv.lot IS NOT NULL AND (l.entry_id IS NULL OR l.user_id <> mv.user_id)
            """,
        ),
        (
            "lot_entry_mismatch",
            f"""
            SELECT e.user_id, e.id, 'expiring credit and its lot disagree (amount, user or expiry)'
            FROM {entry_table} e LEFT JOIN {lot_table} l ON l.entry_id = e.id
            WHERE e.expires_at IS NOT NULL AND (l.entry_id IS NULL OR l.amount <> e.amount
                  OR l.user_id <> e.user_id OR l.expires_at <> e.expires_at)
            UNION ALL
            SELECT l.user_id, l.entry_id, 'lot without an expiring credit entry'
            FROM {lot_table} l LEFT JOIN {entry_table} e ON e.id = l.entry_id
            WHERE e.id IS NULL OR e.expires_at IS NULL
            """,
        ),
        (
            # An EXPIRY takes what was left: right after it, its lot holds nothing but what
            # pending holds reserved from it; and it comes no earlier than the lot's expiry.
            # (A running sum per lot: linear, not a self-join.)
            "bad_expiry",
            f"""
            WITH mv AS MATERIALIZED ({moves})
            SELECT user_id, entry_id, 'expiry of lot ' || lot || ' left ' || left_after
                   || ' credits, or came before ' || expires_at
            FROM (SELECT mv.user_id, mv.entry_id, mv.operation, mv.lot, mv.created_at,
                         l.expires_at,
                         l.amount + sum(mv.delta) OVER (PARTITION BY mv.lot ORDER BY mv.entry_id)
                           AS left_after
                  FROM mv JOIN {lot_table} l ON l.entry_id = mv.lot) r
            WHERE operation = 'EXPIRY' AND (created_at < expires_at OR left_after <> (
                -- what holds pending at that moment had reserved from the lot stays reserved
                SELECT coalesce(sum(-(m->>1)::bigint), 0)
                FROM {hold_table} h, jsonb_array_elements(h.lot_moves) m
                WHERE h.user_id = r.user_id AND h.lot_moves IS NOT NULL
                  AND (m->>0)::bigint = r.lot AND h.created_at < r.created_at
                  AND (h.resolved_at IS NULL OR h.resolved_at > r.created_at)))
            """,
        ),
    ]


def _hold_checks(
    entry_table: str, balance_table: str, lot_table: str, hold_table: str
) -> list[tuple[str, str]]:
    """The holds' invariants: held within 0..balance and equal to the pending holds, and each
    resolved hold's entry (exactly one for a capture, of -captured_amount; none otherwise)."""
    return [
        (
            "held_mismatch",
            f"""
            SELECT coalesce(b.user_id, s.user_id), NULL::bigint,
                   'held ' || coalesce(b.held, 0) || ' != pending holds ' || coalesce(s.total, 0)
                   || ' (balance ' || coalesce(b.balance, 0) || ', next hold expiry '
                   || coalesce(b.next_hold_expiry::text, '-') || ' vs '
                   || coalesce(s.soonest::text, '-') || ')'
            FROM {balance_table} b
            FULL OUTER JOIN (SELECT user_id, sum(amount) AS total, min(expires_at) AS soonest
                             FROM {hold_table} WHERE status = 'pending' GROUP BY user_id) s
              ON s.user_id = b.user_id
            WHERE coalesce(b.held, 0) <> coalesce(s.total, 0) OR b.held < 0
               OR b.held > b.balance
               -- next_hold_expiry: null with no pending hold, else at most the soonest expiry
               -- (a lower bound: a capture or release leaves it, the next slow path resets it)
               OR (s.soonest IS NULL) <> (b.next_hold_expiry IS NULL)
               OR b.next_hold_expiry > s.soonest
            """,
        ),
        (
            "bad_hold",
            f"""
            SELECT h.user_id, h.entry_id, 'hold ' || h.id || ' (' || h.status || ', '
                   || h.amount || ', captured ' || coalesce(h.captured_amount::text, '-')
                   || ') and its entry disagree'
            FROM {hold_table} h LEFT JOIN {entry_table} e ON e.id = h.entry_id
            WHERE (h.status = 'captured' AND (e.id IS NULL OR e.amount <> -h.captured_amount
                   OR e.user_id <> h.user_id OR e.operation <> h.operation
                   OR e.hold_id IS DISTINCT FROM h.id OR h.captured_amount < 1
                   OR h.captured_amount > h.amount))
               OR (h.status <> 'captured' AND (h.entry_id IS NOT NULL
                   OR h.captured_amount IS NOT NULL))
               OR h.amount <= 0
            UNION ALL
            SELECT e.user_id, e.id, 'entry names hold ' || e.hold_id || ', which is not its capture'
            FROM {entry_table} e LEFT JOIN {hold_table} h ON h.id = e.hold_id
            WHERE e.hold_id IS NOT NULL AND (h.id IS NULL OR h.entry_id IS DISTINCT FROM e.id)
            """,
        ),
        (
            "hold_moves_mismatch",
            f"""
            SELECT h.user_id, NULL::bigint, 'hold ' || h.id || ' reserved '
                   || -sum((m->>1)::bigint) || ' from lots, not ' || h.amount
            FROM {hold_table} h, jsonb_array_elements(h.lot_moves) m
            WHERE h.lot_moves IS NOT NULL GROUP BY h.user_id, h.id, h.amount
            HAVING sum((m->>1)::bigint) <> -h.amount
            """,
        ),
    ]


def _checks(entry_table: str, balance_table: str) -> list[tuple[str, str]]:
    """Set-based SQL per invariant; each row is (user_id, entry_id, detail)."""
    return [
        (
            "balance_mismatch",
            f"""
            SELECT coalesce(b.user_id, s.user_id), NULL::bigint,
                   'stored balance ' || coalesce(b.balance, 0) || ' != sum of entries ' || coalesce(s.total, 0)
            FROM {balance_table} b
            FULL OUTER JOIN (SELECT user_id, sum(amount) AS total FROM {entry_table} GROUP BY user_id) s
              ON s.user_id = b.user_id
            WHERE coalesce(b.balance, 0) <> coalesce(s.total, 0)
            """,
        ),
        (
            "negative_balance",
            f"SELECT user_id, NULL::bigint, 'balance ' || balance FROM {balance_table} WHERE balance < 0",
        ),
        (
            "broken_chain",
            f"""
            SELECT user_id, id, 'balance_after ' || balance_after || ' != previous ' || prev || ' + amount ' || amount
            FROM (SELECT user_id, id, amount, balance_after,
                         coalesce(lag(balance_after) OVER (PARTITION BY user_id ORDER BY id), 0) AS prev
                  FROM {entry_table}) c
            WHERE balance_after <> prev + amount OR balance_after < 0
            """,
        ),
        (
            "bad_reversal",
            f"""
            SELECT r.user_id, r.id, 'reverses entry ' || r.reverses_id || ' (' ||
                   CASE WHEN o.user_id <> r.user_id THEN 'another user''s entry'
                        WHEN o.operation IN ('REVERSAL', 'EXPIRY') THEN 'a ' || lower(o.operation)
                        ELSE 'amount ' || r.amount || ' is not the opposite of ' || o.amount END || ')'
            FROM {entry_table} r JOIN {entry_table} o ON o.id = r.reverses_id
            WHERE o.user_id <> r.user_id OR o.operation IN ('REVERSAL', 'EXPIRY') OR r.amount <> -o.amount
            """,
        ),
        (
            # The daily-once unique index is on `day`: a day that is not created_at's UTC date
            # would let a second claim through (or refuse a rightful one).
            "day_mismatch",
            f"""
            SELECT user_id, id, 'day ' || day || ' is not the UTC date of created_at ' || created_at
            FROM {entry_table} WHERE day <> (created_at AT TIME ZONE 'UTC')::date
            """,
        ),
    ]


def ledger_check(*, ledger: AnyLedger, user_ids: list[int] | None = None) -> list[Discrepancy]:
    """Every broken invariant of ``ledger`` (all users, or only ``user_ids``): empty when sound.

    Checks balance = sum of entries, no negative balance, an unbroken ``balance_after`` chain in
    id order, reversals that undo an entry of the same user exactly (the unique index
    already makes each entry reversible once), each entry's ``day`` is its UTC date, and the
    expiring credits: each lot within 0..amount and equal to its amount plus the moves the
    entries recorded on it, the balance row's ``lot_credits`` and ``next_expiry`` matching the
    lots, each entry's moves adding up to its amount, and each EXPIRY emptying its lot; with
    the lots' remaining counting what pending holds reserve from them. Holds: 0 <= held <=
    balance, held equal to the user's pending holds and next_hold_expiry null without one, else
    at most their soonest expiry;
    a captured hold has exactly one entry, of -captured_amount (1..amount), that names it back;
    released, expired and pending holds have none; a hold's lot reservation adds up to it; and each entry having exactly one
    ``entry.posted`` event.
    """
    entry_table, balance_table = tables(ledger)
    lot_table = quote_name(ledger.lot_model._meta.db_table)
    hold_table = quote_name(ledger.hold_model._meta.db_table)
    found: list[Discrepancy] = []
    checks = [
        *_checks(entry_table, balance_table),
        *_lot_checks(entry_table, balance_table, lot_table, hold_table),
        *_hold_checks(entry_table, balance_table, lot_table, hold_table),
        *_event_checks(entry_table, ledger.label),
        *_hold_event_checks(hold_table, ledger.label),
    ]
    with connections[ledger.db_alias].cursor() as cursor:
        for kind, sql in checks:
            if user_ids is not None:
                sql = f"SELECT * FROM ({sql}) q(user_id, entry_id, detail) WHERE user_id = ANY(%s)"
                cursor.execute(sql, [list(user_ids)])
            else:
                cursor.execute(sql)
            for user_id, entry_id, detail in cursor.fetchall():
                found.append(Discrepancy(ledger.label, kind, user_id, entry_id, detail))
    return found


def _event_checks(entry_table: str, label: str) -> list[tuple[str, str]]:
    """Each entry has exactly one ``entry.posted`` event (written by the entry table's trigger in
    the entry's transaction), and no event names an entry that does not exist."""
    if "'" in label:
        return []
    return [
        (
            "entry_event_missing",
            f"""
            SELECT e.user_id, e.id, 'entry has ' || count(v.id) || ' entry.posted events, not 1'
            FROM {entry_table} e
            LEFT JOIN core_ledger_event v
              ON v.ledger = '{label}' AND v.type = 'entry.posted' AND v.object_id = e.id
            GROUP BY e.user_id, e.id HAVING count(v.id) <> 1
            """,
        ),
        (
            "event_without_entry",
            f"""
            SELECT NULL::bigint, v.object_id, 'event ' || v.id || ' names no entry'
            FROM core_ledger_event v
            WHERE v.ledger = '{label}' AND v.type = 'entry.posted'
              AND NOT EXISTS (SELECT 1 FROM {entry_table} e WHERE e.id = v.object_id)
            """,
        ),
    ]


def _hold_event_checks(hold_table: str, label: str) -> list[tuple[str, str]]:
    """Each hold has exactly one ``hold.placed`` event, a resolved hold exactly one event of its
    resolution (``hold.captured`` / ``hold.released`` / ``hold.expired``) and a pending one none;
    no hold event names a hold that does not exist."""
    if "'" in label:
        return []
    return [
        (
            "hold_event_missing",
            f"""
            SELECT h.user_id, h.entry_id,
                   'hold ' || h.id || ' has ' || count(v.id) FILTER (WHERE v.type = 'hold.placed')
                   || ' hold.placed and '
                   || count(v.id) FILTER (WHERE v.type <> 'hold.placed') || ' resolution events'
            FROM {hold_table} h
            LEFT JOIN core_ledger_event v
              ON v.ledger = '{label}' AND left(v.type, 5) = 'hold.' AND v.object_id = h.id
            GROUP BY h.user_id, h.entry_id, h.id, h.status
            HAVING count(v.id) FILTER (WHERE v.type = 'hold.placed') <> 1
                OR count(v.id) FILTER (WHERE v.type = 'hold.' || h.status)
                   <> (CASE WHEN h.status = 'pending' THEN 0 ELSE 1 END)
                OR count(v.id) FILTER (
                       WHERE v.type <> 'hold.placed' AND v.type <> 'hold.' || h.status) <> 0
            """,
        ),
        (
            "event_without_hold",
            f"""
            SELECT NULL::bigint, NULL::bigint, 'event ' || v.id || ' names no hold'
            FROM core_ledger_event v
            WHERE v.ledger = '{label}' AND left(v.type, 5) = 'hold.'
              AND NOT EXISTS (SELECT 1 FROM {hold_table} h WHERE h.id = v.object_id)
            """,
        ),
    ]


@dataclass(frozen=True)
class LedgerTotals:
    """The ledger's outstanding credits (sum of balances) and how many users hold any."""

    outstanding: int
    users_with_balance: int


def ledger_totals(*, ledger: AnyLedger) -> LedgerTotals:
    """One aggregate over the balance table (for the admin's balances page and reports)."""
    row = ledger.balance_model.objects.aggregate(
        outstanding=Sum("balance", default=0),
        users=Count("user_id", filter=Q(balance__gt=0)),
    )
    return LedgerTotals(outstanding=int(row["outstanding"]), users_with_balance=int(row["users"]))


def _totals_key(ledger: AnyLedger) -> str:
    # The database's name too: two databases (a test one, a bench one) may share one cache.
    database = connections[ledger.db_alias].settings_dict["NAME"]
    return f"shared_ledger:totals:{database}:{ledger.label}"


def ledger_totals_forget(*, ledger: AnyLedger) -> None:
    """Drop the cached totals of :func:`ledger_totals_cached` (the next page recomputes them)."""
    cache.delete(_totals_key(ledger))


def ledger_totals_cached(*, ledger: AnyLedger, seconds: int) -> tuple[LedgerTotals, datetime]:
    """:func:`ledger_totals` and when they were computed, kept in the cache for ``seconds``.

    The aggregate reads the whole balance table (about 0.1 s at 1,000,000 users): a list page
    that shows it must not pay for it on every request.
    """
    from django.utils import timezone

    key = _totals_key(ledger)
    hit = cache.get(key)
    if isinstance(hit, tuple) and len(hit) == 3:
        return LedgerTotals(outstanding=int(hit[0]), users_with_balance=int(hit[1])), hit[2]
    totals, at = ledger_totals(ledger=ledger), timezone.now()
    cache.set(key, (totals.outstanding, totals.users_with_balance, at), seconds)
    return totals, at


# --- big tables: counts, pages and searches that do not grow with the table ------------------


@dataclass(frozen=True)
class BoundedCount:
    """How many rows a list holds, found without counting a big table.

    ``kind`` is ``"exact"`` (at most the cap: counted), ``"estimate"`` (an unfiltered big table:
    the planner's ``pg_class.reltuples``) or ``"more_than"`` (a filtered list past the cap:
    ``value`` is the cap + 1).
    """

    value: int
    kind: str


def table_estimate(*, model: type[Model], using: str) -> int:
    """The planner's row estimate of ``model``'s table (``pg_class.reltuples``); -1 if unknown."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


def count_bounded(queryset: QuerySet[Any], *, cap: int) -> BoundedCount:
    """Count at most ``cap`` + 1 rows of ``queryset`` (``COUNT(*)`` over a ``LIMIT`` subquery).

    Past the cap, an unfiltered queryset answers the table's estimate, a filtered one "more than
    ``cap``". No query ever counts a whole big table.
    """
    seen = queryset.order_by().values("pk")[: cap + 1].count()
    if seen <= cap:
        return BoundedCount(seen, "exact")
    if not queryset.query.where:
        estimate = table_estimate(model=queryset.model, using=queryset.db)
        return BoundedCount(max(estimate, seen), "estimate")
    return BoundedCount(seen, "more_than")


def page_rows(queryset: QuerySet[Any], *, start: int, stop: int) -> QuerySet[Any]:
    """Rows ``start``..``stop`` of ``queryset`` in its order, by a deferred join.

    The offset is walked over the ordering index alone (``SELECT pk … OFFSET … LIMIT …``,
    index-only), then only the page's rows are read with their joins and annotations: a deep
    page costs its depth in index entries, not in joined rows, and nothing in the table's size.
    """
    ids = list(queryset.values_list("pk", flat=True)[start:stop])
    return queryset.filter(pk__in=ids)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Shortest description search the trigram index serves (pg_trgm splits words in 3-letter grams).
DESCRIPTION_SEARCH_MIN = 3
_BIGINT_MAX = 2**63 - 1


def entry_search(queryset: QuerySet[EntryT], *, term: str) -> QuerySet[EntryT]:
    """Entries matching the admin's search box, each case served by an index.

    - ``#123``: entry 123. Digits alone: entry 123, user 123's entries, or idempotency key "123".
    - a username (the user model's ``USERNAME_FIELD``, exact): that user's entries;
    - anything else: the entries of users whose username starts with it (case-sensitive, the
      username index's prefix range, at most ``USER_PREFIX_LIMIT`` users), the exact
      idempotency key, or description containing the text (case-insensitive, through the
      trigram index; at least 3 characters).
    """
    term = term.strip()
    if not term:
        return queryset
    if term.startswith("#") and term[1:].isdigit():
        number = int(term[1:])
        return queryset.filter(pk=number) if number <= _BIGINT_MAX else queryset.none()
    if term.isdigit():
        number = int(term)
        if number > _BIGINT_MAX:
            return queryset.filter(idempotency_key=term)
        return queryset.filter(Q(pk=number) | Q(user_id=number) | Q(idempotency_key=term))
    user = user_get(username=term)
    if user is not None:
        return queryset.filter(user_id=user.pk)
    matches = Q(idempotency_key=term)
    starting = users_starting_with(term)
    if starting:
        matches |= Q(user_id__in=starting)
    if len(term) >= DESCRIPTION_SEARCH_MIN:
        table = quote_name(queryset.model._meta.db_table)
        matches |= Q(
            RawSQL(
                f"{table}.description ILIKE %s",
                [_like_pattern(term)],
                output_field=BooleanField(),
            )
        )
    return queryset.filter(matches)


# How many users a username prefix may stand for in a search (the rest are not shown).
USER_PREFIX_LIMIT = 100


def users_starting_with(term: str) -> list[int]:
    """Ids of the users whose username (``USERNAME_FIELD``) starts with ``term``
    (case-sensitive: the prefix range of the field's index), at most ``USER_PREFIX_LIMIT``."""
    User = get_user_model()
    return list(
        User._default_manager.filter(**{f"{username_field()}__startswith": term})
        .order_by(username_field())
        .values_list("pk", flat=True)[:USER_PREFIX_LIMIT]
    )


def user_search(queryset: QuerySet[Any], *, term: str) -> QuerySet[Any]:
    """Rows of the users a balance or lot list's search box names: a username
    (``USERNAME_FIELD``, exact), a user id, else the users whose username starts with it."""
    term = term.strip()
    if not term:
        return queryset
    user = user_find(text=term) if len(term) <= 150 else None
    if user is not None:
        return queryset.filter(user_id=user.pk)
    return queryset.filter(user_id__in=users_starting_with(term))


def user_get(*, username: str | None = None, user_id: int | None = None) -> Any:
    """The user whose username is ``username``, or whose primary key is ``user_id``; None if none.

    "Username" is whatever the host's user model names ``USERNAME_FIELD`` (``username``,
    ``email``, ...), looked up through the model manager's ``get_by_natural_key``, as Django's
    login does. Exactly one of the two is given: the caller says which one it has, so ``"42"`` is
    never both a name and an id.
    """
    User = get_user_model()
    manager = User._default_manager
    try:
        if username is not None and user_id is None:
            return manager.get_by_natural_key(username.strip())  # pyright: ignore[reportAttributeAccessIssue]  # every user manager has it; the stubs type Manager
        if user_id is not None and username is None:
            return manager.get(pk=user_id)
    except (User.DoesNotExist, ValueError, TypeError):
        return None
    raise TypeError("user_get() takes exactly one of username= or user_id=")


def username_field() -> str:
    """The user model's ``USERNAME_FIELD`` (``username``, ``email``...): what users log in with."""
    # getattr: the attribute is untyped without mypy's Django plugin (pyright has none).
    return str(getattr(get_user_model(), "USERNAME_FIELD"))  # noqa: B009


def user_find(*, text: str | int) -> Any:
    """The user whose username (``USERNAME_FIELD``) is ``text``, else whose id it is (when
    numeric); None if neither. For the admin's free-text user box; commands say which one they
    were given and use :func:`user_get`.
    """
    value = str(text).strip()
    user = user_get(username=value) if value else None
    if user is None and value.isdigit():
        user = user_get(user_id=int(value))
    return user


# --- users ---------------------------------------------------------------------------------------


def active_user_column() -> str | None:
    """The user model's ``is_active`` column, or None when it has no such field."""
    user_model = get_user_model()
    field = next((f for f in user_model._meta.concrete_fields if f.name == "is_active"), None)
    return None if field is None else field.column


def active_users() -> QuerySet[Any]:
    """Users with ``is_active`` set; every user when the user model has no such field."""
    users = get_user_model()._default_manager.all()
    if active_user_column() is not None:
        users = users.filter(is_active=True)
    return users


def active_user_ids(*, chunk_size: int = 2000) -> Iterator[int]:
    """Every active user's id in id order, fetched ``chunk_size`` at a time (keyset pagination).

    Constant memory, and no cursor held open across the caller's own transactions.
    """
    qs = active_users().order_by("pk")
    last = 0
    while True:
        ids = list(qs.filter(pk__gt=last).values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return
        yield from ids
        last = ids[-1]


# --- verification at size: incremental from a checkpoint, and a streaming full run ------------


@dataclass
class VerifyResult:
    """What a :func:`ledger_verify_since` or :func:`ledger_verify_full` run found and covered.

    ``discrepancies`` holds at most the run's ``limit`` (``total`` counts them all);
    ``entries`` is how many entries the run checked and ``last_entry_id`` the highest id it saw
    (None: the ledger has no entry after ``since``).
    """

    ledger: str
    since: int | None
    entries: int = 0
    last_entry_id: int | None = None
    total: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)

    def add(self, found: Discrepancy, limit: int) -> None:
        self.total += 1
        if len(self.discrepancies) < limit:
            self.discrepancies.append(found)


@dataclass(frozen=True)
class VerifyProgress:
    """Where a full run is: users and entries done so far, out of about how many."""

    ledger: str
    stage: str
    users_done: int
    users_total: int
    entries: int


ProgressCallback = Callable[[VerifyProgress], None]
DISCREPANCY_LIMIT = 10_000


def _restricted_lot_checks(ledger: AnyLedger, users_param: str) -> list[tuple[str, str]]:
    """``_lot_checks`` and ``_hold_checks`` on some users only (an ``ANY(array)`` parameter):
    the entry, balance, lot and hold tables become CTEs of those users' rows, each read through
    an index of its user."""
    entry_table, balance_table = tables(ledger)
    lot_table = quote_name(ledger.lot_model._meta.db_table)
    hold_table = quote_name(ledger.hold_model._meta.db_table)
    where = f"user_id = ANY({users_param})"
    ctes = (
        f"e_src AS (SELECT * FROM {entry_table} WHERE {where}), "
        f"b_src AS (SELECT * FROM {balance_table} WHERE {where}), "
        f"l_src AS (SELECT * FROM {lot_table} WHERE {where}), "
        f"h_src AS (SELECT * FROM {hold_table} WHERE {where})"
    )
    restricted = []
    sources = ("e_src", "b_src", "l_src", "h_src")
    for kind, sql in [*_lot_checks(*sources), *_hold_checks(*sources)]:
        body = sql.strip()
        if body.upper().startswith("WITH "):
            body = f"WITH {ctes}, {body[5:]}"
        else:
            body = f"WITH {ctes} {body}"
        restricted.append((kind, body))
    return restricted


def _new_entry_event_checks(ledger: AnyLedger) -> list[tuple[str, str]]:
    """Each entry after ``%(since)s`` has exactly one ``entry.posted`` event (events naming no
    entry are the full run's to find)."""
    entry_table, _ = tables(ledger)
    return [
        (kind, f"WITH n_src AS (SELECT * FROM {entry_table} WHERE id > %(since)s) {sql.strip()}")
        for kind, sql in _event_checks("n_src", ledger.label)
        if kind == "entry_event_missing"
    ]


def _seam_checks(entry_table: str, balance_table: str) -> list[tuple[str, str]]:
    """The checks of the entries after ``%(since)s``, and of the seam with those before it."""
    return [
        (
            # The first new entry of a user chains from their last entry at or before the mark.
            "broken_chain",
            f"""
            SELECT user_id, id, 'balance_after ' || balance_after || ' != previous ' || prev
                   || ' + amount ' || amount
            FROM (SELECT e.user_id, e.id, e.amount, e.balance_after,
                         coalesce(lag(e.balance_after) OVER (PARTITION BY e.user_id ORDER BY e.id),
                                  (SELECT p.balance_after FROM {entry_table} p
                                   WHERE p.user_id = e.user_id AND p.id <= %(since)s
                                   ORDER BY p.id DESC LIMIT 1),
                                  0) AS prev
                  FROM {entry_table} e WHERE e.id > %(since)s) c
            WHERE balance_after <> prev + amount OR balance_after < 0
            """,
        ),
        (
            # With the chain unbroken, the balance equals the sum of the entries exactly when it
            # equals the last entry's balance_after: one read per user touched.
            "balance_mismatch",
            f"""
            SELECT t.user_id, NULL::bigint, 'stored balance ' || coalesce(b.balance::text, 'missing')
                   || ' != balance_after of the last entry ' || l.balance_after
            FROM (SELECT DISTINCT user_id FROM {entry_table} WHERE id > %(since)s) t
            CROSS JOIN LATERAL (SELECT balance_after FROM {entry_table} x WHERE x.user_id = t.user_id
                                ORDER BY x.id DESC LIMIT 1) l
            LEFT JOIN {balance_table} b ON b.user_id = t.user_id
            WHERE b.balance IS DISTINCT FROM l.balance_after
            """,
        ),
        (
            "negative_balance",
            f"""
            SELECT b.user_id, NULL::bigint, 'balance ' || b.balance FROM {balance_table} b
            WHERE b.balance < 0 AND b.user_id IN (SELECT user_id FROM {entry_table}
                                                  WHERE id > %(since)s)
            """,
        ),
        (
            "bad_reversal",
            f"""
            SELECT r.user_id, r.id, 'reverses entry ' || r.reverses_id || ' (' ||
                   CASE WHEN o.user_id <> r.user_id THEN 'another user''s entry'
                        WHEN o.operation IN ('REVERSAL', 'EXPIRY') THEN 'a ' || lower(o.operation)
                        ELSE 'amount ' || r.amount || ' is not the opposite of ' || o.amount END || ')'
            FROM {entry_table} r JOIN {entry_table} o ON o.id = r.reverses_id
            WHERE r.id > %(since)s AND r.reverses_id IS NOT NULL
              AND (o.user_id <> r.user_id OR o.operation IN ('REVERSAL', 'EXPIRY')
                   OR r.amount <> -o.amount)
            """,
        ),
        (
            "day_mismatch",
            f"""
            SELECT user_id, id, 'day ' || day || ' is not the UTC date of created_at ' || created_at
            FROM {entry_table} WHERE id > %(since)s AND day <> (created_at AT TIME ZONE 'UTC')::date
            """,
        ),
    ]


def ledger_verify_since(
    *, ledger: AnyLedger, since: int, limit: int = DISCREPANCY_LIMIT
) -> VerifyResult:
    """Check only what is new since entry ``since`` (a checkpoint), and the seam with the rest.

    The entries after ``since``: each one's ``balance_after`` chains from the user's previous
    entry (for the first new entry of a user, their last entry at or before ``since``), each
    reversal undoes one entry of its user, each ``day`` is its UTC date. The users they moved:
    the balance row equals their last entry's ``balance_after``, none is negative, and their
    lots hold (every lot check of :func:`ledger_check`, on those users' lots and lot-moving
    entries). Costs the new entries plus the touched users' lots, never the whole history.
    """
    entry_table, balance_table = tables(ledger)
    result = VerifyResult(ledger=ledger.label, since=since)
    with connections[ledger.db_alias].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), max(id), coalesce(array_agg(DISTINCT user_id), '{{}}') "
            f"FROM {entry_table} WHERE id > %s",
            [since],
        )
        count, last_id, users = cursor.fetchone()
        result.entries, result.last_entry_id = int(count), last_id
        if not count:
            return result
        checks: list[tuple[str, str, dict[str, Any]]] = [
            (kind, sql, {"since": since}) for kind, sql in _seam_checks(entry_table, balance_table)
        ]
        checks += [
            (kind, sql, {"users": list(users)})
            for kind, sql in _restricted_lot_checks(ledger, "%(users)s")
        ]
        checks += [(kind, sql, {"since": since}) for kind, sql in _new_entry_event_checks(ledger)]
        for kind, sql, params in checks:
            cursor.execute(sql, params)
            for user_id, entry_id, detail in cursor.fetchall():
                result.add(Discrepancy(ledger.label, kind, user_id, entry_id, detail), limit)
    return result


def _range_checks(entry_table: str, balance_table: str) -> list[tuple[str, str]]:
    """Per-user checks on the users in ``[%(lo)s, %(hi)s)``: index-only scans of the covering
    (user, id) index, in (user, id) order, so the chain needs no sort."""
    in_range = "user_id >= %(lo)s AND user_id < %(hi)s"
    return [
        (
            "broken_chain",
            f"""
            SELECT user_id, id, 'balance_after ' || balance_after || ' != previous ' || prev
                   || ' + amount ' || amount
            FROM (SELECT user_id, id, amount, balance_after,
                         coalesce(lag(balance_after) OVER (PARTITION BY user_id ORDER BY id), 0)
                           AS prev
                  FROM {entry_table} WHERE {in_range}) c
            WHERE balance_after <> prev + amount OR balance_after < 0
            """,
        ),
        (
            "balance_mismatch",
            f"""
            SELECT coalesce(b.user_id, s.user_id), NULL::bigint,
                   'stored balance ' || coalesce(b.balance, 0) || ' != sum of entries '
                   || coalesce(s.total, 0)
            FROM (SELECT user_id, balance FROM {balance_table} WHERE {in_range}) b
            FULL OUTER JOIN (SELECT user_id, sum(amount) AS total
                             FROM {entry_table} WHERE {in_range} GROUP BY user_id) s
              ON s.user_id = b.user_id
            WHERE coalesce(b.balance, 0) <> coalesce(s.total, 0)
            """,
        ),
        (
            "negative_balance",
            f"SELECT user_id, NULL::bigint, 'balance ' || balance FROM {balance_table} "
            f"WHERE {in_range} AND balance < 0",
        ),
    ]


def ledger_verify_full(
    *,
    ledger: AnyLedger,
    users_per_batch: int = 20_000,
    ids_per_batch: int = 1_000_000,
    limit: int = DISCREPANCY_LIMIT,
    on_progress: ProgressCallback | None = None,
) -> VerifyResult:
    """Every invariant of :func:`ledger_check`, streamed in batches: constant memory at any size.

    Users are checked ``users_per_batch`` ids at a time (chain, balance = sum of entries, no
    negative balance: index-only scans of the covering (user, id) index, no sort), then the
    entries ``ids_per_batch`` ids at a time (each ``day`` is its UTC date), then reversals
    (the unique index on ``reverses``) and the lots (the partial index of lot-moving entries).
    ``on_progress`` is called after each batch.
    """
    entry_table, balance_table = tables(ledger)
    lot_table = quote_name(ledger.lot_model._meta.db_table)
    result = VerifyResult(ledger=ledger.label, since=None)
    with connections[ledger.db_alias].cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT min(user_id) FROM {entry_table}), (SELECT max(user_id) FROM {entry_table}),"
            f" (SELECT min(user_id) FROM {balance_table}), (SELECT max(user_id) FROM {balance_table}),"
            f" (SELECT max(id) FROM {entry_table})"
        )
        lo_e, hi_e, lo_b, hi_b, last_id = cursor.fetchone()
        result.last_entry_id = last_id
        lows = [v for v in (lo_e, lo_b) if v is not None]
        highs = [v for v in (hi_e, hi_b) if v is not None]
        if lows:
            first, last = min(lows), max(highs)
            total_users = last - first + 1
            for lo in range(first, last + 1, users_per_batch):
                hi = lo + users_per_batch
                for kind, sql in _range_checks(entry_table, balance_table):
                    cursor.execute(sql, {"lo": lo, "hi": hi})
                    for user_id, entry_id, detail in cursor.fetchall():
                        result.add(
                            Discrepancy(ledger.label, kind, user_id, entry_id, detail), limit
                        )
                cursor.execute(
                    f"SELECT count(*) FROM {entry_table} WHERE user_id >= %s AND user_id < %s",
                    [lo, hi],
                )
                result.entries += int(cursor.fetchone()[0])
                if on_progress:
                    on_progress(
                        VerifyProgress(
                            ledger.label,
                            "users",
                            min(hi, last + 1) - first,
                            total_users,
                            result.entries,
                        )
                    )
        day_sql = (
            f"SELECT user_id, id, 'day ' || day || ' is not the UTC date of created_at ' || "
            f"created_at FROM {entry_table} WHERE id >= %s AND id < %s "
            "AND day <> (created_at AT TIME ZONE 'UTC')::date"
        )
        for lo in range(0, (last_id or 0) + 1, ids_per_batch):
            cursor.execute(day_sql, [lo, lo + ids_per_batch])
            for user_id, entry_id, detail in cursor.fetchall():
                result.add(
                    Discrepancy(ledger.label, "day_mismatch", user_id, entry_id, detail), limit
                )
            if on_progress:
                done = min(lo + ids_per_batch, (last_id or 0) + 1)
                on_progress(
                    VerifyProgress(
                        ledger.label, "entries", done, (last_id or 0) + 1, result.entries
                    )
                )
        # Reversals from the seam's check with the mark at 0: "reverses_id IS NOT NULL" reads
        # the unique index on reverses, not the table.
        reversals = [
            check
            for check in _seam_checks(entry_table, balance_table)
            if check[0] == "bad_reversal"
        ]
        for kind, sql in reversals:
            cursor.execute(sql, {"since": 0})
            for user_id, entry_id, detail in cursor.fetchall():
                result.add(Discrepancy(ledger.label, kind, user_id, entry_id, detail), limit)
        hold_table = quote_name(ledger.hold_model._meta.db_table)
        for kind, sql in [
            *_lot_checks(entry_table, balance_table, lot_table, hold_table),
            *_hold_checks(entry_table, balance_table, lot_table, hold_table),
            *_event_checks(entry_table, ledger.label),
        ]:
            cursor.execute(sql)
            for user_id, entry_id, detail in cursor.fetchall():
                result.add(Discrepancy(ledger.label, kind, user_id, entry_id, detail), limit)
    return result


def verify_checkpoint_get(*, ledger: AnyLedger) -> Any:
    """The ledger's :class:`~core_ledger.models.VerifyCheckpoint`, or None before its first run."""
    from core_ledger.models import VerifyCheckpoint

    return VerifyCheckpoint.objects.using(ledger.db_alias).filter(ledger=ledger.label).first()


def settled_entry_id(*, ledger: AnyLedger, settle_seconds: int, at_most: int) -> int | None:
    """The highest entry id at most ``at_most`` among entries older than ``settle_seconds``.

    A checkpoint stops there, not at the newest id seen: an id is taken before its transaction
    commits, so an entry with a smaller id may still commit after the run; entries of the last
    ``settle_seconds`` are checked again by the next run instead of being skipped for good.
    """
    entry_table, _ = tables(ledger)
    with connections[ledger.db_alias].cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {entry_table} WHERE id <= %s "
            "AND created_at <= statement_timestamp() - make_interval(secs => %s) "
            "ORDER BY id DESC LIMIT 1",
            [at_most, settle_seconds],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else None

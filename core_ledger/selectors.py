"""Reads: balances now and at a past moment, entry queries, and the ledger's invariants.

A balance is one indexed row read whatever the history length; a past balance is the
``balance_after`` of the user's last entry at that moment, one read on the (user, created_at) index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Count, Q, QuerySet, Sum

from core_ledger.ledger import AnyLedger, BalanceT, EntryT, Ledger, registry
from core_ledger.services.sql import tables


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
class BalanceSnapshot:
    """A user's balance now or at a past moment, and when it last moved (None: never)."""

    user_id: int
    balance: int
    updated_at: datetime | None


def balance_snapshot(
    *, ledger: AnyLedger, user_id: int, at: datetime | None = None
) -> BalanceSnapshot:
    """The balance with its last-moved time: the balance row now, or the last entry up to ``at``.

    The API shows both values together, so they come from one read of one row.
    """
    if at is None:
        row = (
            ledger.balance_model.objects.filter(user_id=user_id)
            .values_list("balance", "updated_at")
            .first()
        )
    else:
        row = (
            ledger.entry_model.objects.filter(user_id=user_id, created_at__lte=at)
            .order_by("-created_at", "-id")
            .values_list("balance_after", "created_at")
            .first()
        )
    if row is None:
        return BalanceSnapshot(user_id=user_id, balance=0, updated_at=None)
    return BalanceSnapshot(user_id=user_id, balance=int(row[0]), updated_at=row[1])


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
                        WHEN o.operation = 'REVERSAL' THEN 'a reversal'
                        ELSE 'amount ' || r.amount || ' is not the opposite of ' || o.amount END || ')'
            FROM {entry_table} r JOIN {entry_table} o ON o.id = r.reverses_id
            WHERE o.user_id <> r.user_id OR o.operation = 'REVERSAL' OR r.amount <> -o.amount
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
    already makes each entry reversible once), and each entry's ``day`` is its UTC date.
    """
    entry_table, balance_table = tables(ledger)
    found: list[Discrepancy] = []
    with connections[ledger.db_alias].cursor() as cursor:
        for kind, sql in _checks(entry_table, balance_table):
            if user_ids is not None:
                sql = f"SELECT * FROM ({sql}) q(user_id, entry_id, detail) WHERE user_id = ANY(%s)"
                cursor.execute(sql, [list(user_ids)])
            else:
                cursor.execute(sql)
            for user_id, entry_id, detail in cursor.fetchall():
                found.append(Discrepancy(ledger.label, kind, user_id, entry_id, detail))
    return found


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

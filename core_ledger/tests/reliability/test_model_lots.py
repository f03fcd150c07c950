"""Model-based test of expiring credits with a clock that moves forward.

Hypothesis grants expiring and never-expiring credits, claims the daily reward (alpha's lasts 7
days), spends, reverses any entry, runs ``ledger_expire`` and moves the clock forward by minutes
to days; a plain-Python model of the rules in DESIGN.md and the expiring-credits issue predicts
every decision, every ``balance_after``, the lots each debit draws (soonest expiry first, ties by
the oldest entry, never-expiring credits last), what reversals give back or take, the EXPIRY
entries written before a write or by a sweep, and ``available``.

The clock: the database's ``clock_timestamp()`` and ``now()`` are shadowed, for this test's
connection only, by functions in a ``test_clock`` schema placed before ``pg_catalog`` on the
``search_path`` that add ``test_clock.offset``; time-machine moves Python's clock by the same
offset (lifetimes and ``expires_at`` checks are computed in Python). Both still tick in real
time. Clock moves and lifetimes are whole minutes, so an example (well under a minute of real
time) can never leave an expiry between the model's reading of the clock and the database's.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import registry
from core_ledger.selectors import balance_snapshot, ledger_check
from core_ledger.services import entry_post, entry_reverse
from core_ledger.services.lots import lots_expire

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

LEDGER = "alpha"
N_USERS = 2
DAILY_REWARD = 10  # alpha's fixed amount, lasting 7 days (the expiring-credits issue)
DAILY_LIFETIME = timedelta(days=7)
LIFETIMES = [None, 45, 6 * 60, 2 * 24 * 60, 10 * 24 * 60]  # minutes; None: never expires
CLOCK_MOVES = [30, 5 * 60, 24 * 60, 3 * 24 * 60, 8 * 24 * 60]  # minutes

STEPS = {"accepted": 0, "refused": 0, "expired": 0, "clock_moves": 0, "drawn_lots": 0}
_names = itertools.count()

CLOCK_SQL = """
CREATE SCHEMA IF NOT EXISTS test_clock;
CREATE OR REPLACE FUNCTION test_clock.clock_timestamp() RETURNS timestamptz
  LANGUAGE sql VOLATILE AS $$ SELECT pg_catalog.clock_timestamp()
  + coalesce(nullif(current_setting('test_clock.offset', true), ''), '0')::interval $$;
CREATE OR REPLACE FUNCTION test_clock.now() RETURNS timestamptz
  LANGUAGE sql STABLE AS $$ SELECT pg_catalog.now()
  + coalesce(nullif(current_setting('test_clock.offset', true), ''), '0')::interval $$;
SET search_path = test_clock, "$user", public, pg_catalog;
"""


def set_database_offset(minutes: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('test_clock.offset', %s, false)", [f"{minutes} min"])


# --- the model ----------------------------------------------------------------------------------


@dataclass
class Lot:
    amount: int
    remaining: int
    expires_at: datetime


@dataclass
class Entry:
    user: int
    operation: str
    amount: int
    expires_at: datetime | None = None
    moves: list[list[Any]] | None = None
    reversed: bool = False


@dataclass
class Account:
    balance: int = 0
    lots: dict[int, Lot] = field(default_factory=dict)
    expiries: int = 0  # EXPIRY entries written
    claimed: set[date] = field(default_factory=set)
    # The operation's own entry's balance_after, when an EXPIRY follows it in the same write
    # (credits given back to a lot that has expired): else the balance after the write.
    entry_balance: int | None = None

    def open_lots(self) -> list[tuple[int, Lot]]:
        """Lots with credits left in draw order: soonest expiry, then the oldest entry."""
        return sorted(
            ((i, lot) for i, lot in self.lots.items() if lot.remaining > 0),
            key=lambda item: (item[1].expires_at, item[0]),
        )

    def expired_credits(self, now: datetime) -> int:
        return sum(lot.remaining for _, lot in self.open_lots() if lot.expires_at <= now)

    def available(self, now: datetime) -> int:
        return self.balance - self.expired_credits(now)

    def sweep(self, now: datetime) -> int:
        """Write down every expired lot (an EXPIRY entry each); how many."""
        swept = 0
        for _, lot in self.open_lots():
            if lot.expires_at <= now:
                self.balance -= lot.remaining
                lot.remaining = 0
                self.expiries += 1
                swept += 1
        return swept

    def never_expiring(self) -> int:
        return self.balance - sum(lot.remaining for lot in self.lots.values())


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def draw(account: Account, amount: int) -> list[list[Any]]:
    moves: list[list[Any]] = []
    need = amount
    for lot_id, lot in account.open_lots():
        if not need:
            break
        take = min(need, lot.remaining)
        lot.remaining -= take
        moves.append([lot_id, -take])
        need -= take
    if need:
        moves.append([None, -need])
    return moves


def take_back(account: Account, amount: int) -> list[list[Any]]:
    """Reversing a never-expiring credit: never-expiring credits first, then the lots that
    expire last."""
    take = min(amount, account.never_expiring())
    moves: list[list[Any]] = [[None, -take]] if take else []
    need = amount - take
    for lot_id, lot in reversed(account.open_lots()):
        if not need:
            break
        part = min(need, lot.remaining)
        lot.remaining -= part
        moves.append([lot_id, -part])
        need -= part
    return moves


def recorded(moves: list[list[Any]]) -> list[list[Any]] | None:
    """What an entry records: its moves when a lot is among them, else nothing."""
    return moves if any(lot is not None for lot, _ in moves) else None


class LotsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = registry.get(LEDGER)
        self.offset = 0  # minutes the clock has moved
        self.traveller = time_machine.travel(datetime.now(tz=dt_timezone.utc), tick=True)
        self.shift = self.traveller.start()
        set_database_offset(0)
        self.users: list[int] = []
        self.accounts: dict[int, Account] = {}
        self.entries: dict[int, Entry] = {}

    def teardown(self) -> None:
        """Every example ends with the clock past every lifetime and a sweep, which must write
        down exactly the lots the model says are left."""
        try:
            if self.users:
                self._shift_clock(max(m for m in LIFETIMES if m is not None))
                self.expire()
                self.the_ledger_matches_the_model()
        finally:
            self.traveller.stop()
            set_database_offset(0)

    @initialize(
        amounts=st.lists(st.integers(1, 60), min_size=N_USERS, max_size=N_USERS),
        lifetime=st.sampled_from(LIFETIMES[1:3]),
        spend=st.integers(0, 30),
    )
    def create_users(self, amounts: list[int], lifetime: int, spend: int) -> None:
        """Users with their signup credit, a lot that expires within hours and a first spend that
        may draw from it, so every example has lots to draw and to expire (a run of only
        never-expiring credits would exercise none of what this test is about)."""
        user_model = get_user_model()
        for _ in range(N_USERS):
            # The signal grants the signup credit (never expires), as for a real sign-up.
            user = user_model.objects.create(username=f"lots-model-{next(_names)}")
            self.users.append(user.pk)
            account = self.accounts[user.pk] = Account()
            for entry in self.ledger.entry_model.objects.filter(user_id=user.pk):
                assert entry.operation == "SIGNUP_CREDIT" and entry.expires_at is None
                account.balance += entry.amount
                self.entries[entry.pk] = Entry(user.pk, entry.operation, entry.amount)
        for index, amount in enumerate(amounts):
            self.credit(user=index, amount=amount, lifetime=lifetime)
        if spend:
            self.spend(user=0, amount=spend)

    # --- running an operation against both --------------------------------------------------

    def _run(self, user: int, predict: Any, act: Any, check: Any = None) -> None:
        """``predict(account, now)`` mutates a copy of the account (or raises Refused);
        ``act()`` calls the service. Only an accepted operation keeps the copy."""
        now = timezone.now()
        trial = copy.deepcopy(self.accounts[user])
        refusal_code = ""
        try:
            expected = predict(trial, now)
        except Refused as refusal:
            expected, refusal_code = None, refusal.code
        try:
            result = act()
        except LedgerError as exc:
            assert refusal_code, f"refused {exc.code}; the model accepts: {expected}"
            assert exc.code == refusal_code, f"refused {exc.code}; model: {refusal_code}"
            STEPS["refused"] += 1
            return
        assert not refusal_code, f"accepted; the model refuses with {refusal_code}"
        entry = getattr(result, "entry", result)
        expected_after = trial.balance if trial.entry_balance is None else trial.entry_balance
        trial.entry_balance = None
        assert entry.balance_after == expected_after, (entry.balance_after, expected_after)
        if check is not None:
            check(entry, expected, trial)
        STEPS["expired"] += trial.expiries - self.accounts[user].expiries
        self.accounts[user] = trial
        STEPS["accepted"] += 1

    # --- rules --------------------------------------------------------------------------------

    @rule(
        user=st.integers(0, N_USERS - 1),
        amount=st.integers(1, 60),
        lifetime=st.sampled_from(LIFETIMES),
    )
    def credit(self, user: int, amount: int, lifetime: int | None) -> None:
        user_id = self.users[user]
        expires_at = None if lifetime is None else timezone.now() + timedelta(minutes=lifetime)

        def predict(account: Account, now: datetime) -> Any:
            account.sweep(now)
            account.balance += amount
            return expires_at

        def check(entry: Any, expected: Any, account: Account) -> None:
            assert entry.expires_at == expected and entry.lot_moves is None
            if expected is not None:
                account.lots[entry.pk] = Lot(amount, amount, expected)
            self.entries[entry.pk] = Entry(user_id, "CREDIT_ADD", amount, expected)

        self._run(
            user_id,
            predict,
            lambda: entry_post(
                ledger=self.ledger,
                user_id=user_id,
                operation="CREDIT_ADD",
                amount=amount,
                expires_at=expires_at,
            ),
            check,
        )

    @rule(user=st.integers(0, N_USERS - 1))
    def daily_reward(self, user: int) -> None:
        """Claimed by the user; 10 credits lasting 7 days; once per UTC day of the clock."""
        user_id = self.users[user]
        day = timezone.now().astimezone(dt_timezone.utc).date()

        def predict(account: Account, now: datetime) -> Any:
            if day in account.claimed:
                raise Refused("already_claimed")
            account.sweep(now)
            account.balance += DAILY_REWARD
            account.claimed.add(day)
            return now + DAILY_LIFETIME

        def check(entry: Any, expected: datetime, account: Account) -> None:
            assert entry.expires_at is not None
            assert abs(entry.expires_at - expected) < timedelta(seconds=30), entry.expires_at
            account.lots[entry.pk] = Lot(DAILY_REWARD, DAILY_REWARD, entry.expires_at)
            self.entries[entry.pk] = Entry(user_id, "DAILY_REWARD", DAILY_REWARD, entry.expires_at)

        actor = get_user_model().objects.get(pk=user_id)
        self._run(
            user_id,
            predict,
            lambda: entry_post(
                ledger=self.ledger, user_id=user_id, operation="DAILY_REWARD", actor=actor
            ),
            check,
        )

    @rule(user=st.integers(0, N_USERS - 1), amount=st.integers(1, 40))
    def spend(self, user: int, amount: int) -> None:
        user_id = self.users[user]

        def predict(account: Account, now: datetime) -> Any:
            if amount > account.available(now):
                raise Refused("insufficient_credits")
            account.sweep(now)
            moves = draw(account, amount)
            account.balance -= amount
            return moves

        def check(entry: Any, moves: list[list[Any]], account: Account) -> None:
            assert entry.lot_moves == recorded(moves), (entry.lot_moves, moves)
            STEPS["drawn_lots"] += sum(1 for lot, _ in moves if lot is not None)
            self.entries[entry.pk] = Entry(user_id, "CREDIT_SPEND", -amount, None, entry.lot_moves)

        self._run(
            user_id,
            predict,
            lambda: entry_post(
                ledger=self.ledger, user_id=user_id, operation="CREDIT_SPEND", amount=amount
            ),
            check,
        )

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        ids = list(
            self.ledger.entry_model.objects.filter(user_id__in=self.users)
            .order_by("id")
            .values_list("id", "operation", "user_id")
        )
        entry_id, operation, user_id = data.draw(st.sampled_from(ids))
        original = self.entries.get(entry_id)
        if original is None:
            assert operation == "EXPIRY", (entry_id, operation)

        def predict(account: Account, now: datetime) -> Any:
            if original is None:
                raise Refused("cannot_reverse_expiry")
            if original.operation == "REVERSAL":
                raise Refused("cannot_reverse_reversal")
            if original.reversed:
                raise Refused("already_reversed")
            account.sweep(now)
            if original.amount < 0:  # a debit: give the credits back where they came from
                account.balance -= original.amount
                back = [[lot, -delta] for lot, delta in original.moves or []]
                for lot_id, delta in back:
                    if lot_id is not None:
                        account.lots[lot_id].remaining += delta
                account.entry_balance = account.balance  # the REVERSAL's own balance_after
                account.sweep(now)  # given back to an expired lot: an EXPIRY follows
                return back or None
            if account.balance < original.amount:
                raise Refused("insufficient_credits")
            if original.expires_at is not None:  # an expiring credit: its whole lot
                lot = account.lots[entry_id]
                if lot.remaining < lot.amount:
                    raise Refused("credits_already_used")
                lot.remaining = 0
                account.balance -= original.amount
                return [[entry_id, -original.amount]]
            moves = take_back(account, original.amount)
            account.balance -= original.amount
            return recorded(moves)

        def check(entry: Any, moves: Any, account: Account) -> None:
            assert original is not None
            assert entry.lot_moves == moves, (entry.lot_moves, moves)
            assert entry.reverses_id == entry_id and entry.amount == -original.amount
            original.reversed = True
            self.entries[entry.pk] = Entry(user_id, "REVERSAL", -original.amount)

        self._run(
            user_id,
            predict,
            lambda: entry_reverse(ledger=self.ledger, entry_id=entry_id, reason="model"),
            check,
        )

    @rule()
    def expire(self) -> None:
        """``ledger_expire``: every user's expired lots written down (other examples' users'
        lots may be due too, so only this example's are counted)."""
        now = timezone.now()
        expected = {user: account.sweep(now) for user, account in self.accounts.items()}
        before = self._expiry_entries()
        lots_expire(ledger=self.ledger)
        after = self._expiry_entries()
        for user, count in expected.items():
            assert after.get(user, 0) - before.get(user, 0) == count, (user, count)
        STEPS["expired"] += sum(expected.values())

    @rule(minutes=st.sampled_from(CLOCK_MOVES))
    def move_clock(self, minutes: int) -> None:
        self._shift_clock(minutes)
        STEPS["clock_moves"] += 1

    def _shift_clock(self, minutes: int) -> None:
        self.offset += minutes
        self.shift.shift(timedelta(minutes=minutes))
        set_database_offset(self.offset)

    # --- invariants ---------------------------------------------------------------------------

    def _expiry_entries(self) -> dict[int, int]:
        rows = (
            self.ledger.entry_model.objects.filter(user_id__in=self.users, operation="EXPIRY")
            .values_list("user_id")
            .order_by()
        )
        counts: dict[int, int] = {}
        for (user_id,) in rows:
            counts[user_id] = counts.get(user_id, 0) + 1
        return counts

    @invariant()
    def the_ledger_matches_the_model(self) -> None:
        if not self.users:
            return
        now = timezone.now()
        expiries = self._expiry_entries()
        for user_id, account in self.accounts.items():
            snapshot = balance_snapshot(ledger=self.ledger, user_id=user_id)
            assert snapshot.balance == account.balance, (snapshot.balance, account.balance)
            assert snapshot.available == account.available(now)
            stored = dict(
                self.ledger.lot_model.objects.filter(user_id=user_id).values_list("pk", "remaining")
            )
            assert stored == {i: lot.remaining for i, lot in account.lots.items()}
            assert expiries.get(user_id, 0) == account.expiries
            unexpired = [
                (i, lot.remaining) for i, lot in account.open_lots() if lot.expires_at > now
            ]
            assert [(lot.entry, lot.amount) for lot in snapshot.expiring] == unexpired
        problems = ledger_check(ledger=self.ledger, user_ids=self.users)
        assert not problems, [str(p) for p in problems]


def test_expiring_credits_match_the_model(figures: Any) -> None:
    """Hypothesis drives the machine; every decision, draw, expiry and balance must match."""
    with connection.cursor() as cursor:
        cursor.execute(CLOCK_SQL)
        # The shadow clock is the one in use: an offset moves what unqualified calls see.
        cursor.execute("SELECT set_config('test_clock.offset', '1 day', false)")
        cursor.execute(
            "SELECT clock_timestamp() - pg_catalog.clock_timestamp() "
            "BETWEEN interval '23 hours' AND interval '25 hours', now() > pg_catalog.now()"
        )
        assert cursor.fetchone() == (True, True)
    for key in STEPS:
        STEPS[key] = 0
    run_state_machine_as_test(
        LotsMachine,
        settings=settings(
            max_examples=int(os.environ.get("RELIABILITY_MODEL_EXAMPLES", "40")),
            stateful_step_count=int(os.environ.get("RELIABILITY_MODEL_STEPS", "30")),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    print(f"lots model test: {STEPS}")
    for name, value in STEPS.items():
        figures(f"lots model {name}", value)
    # The run must have exercised what it is about, not only refusals.
    assert STEPS["expired"] > 0 and STEPS["drawn_lots"] > 0 and STEPS["clock_moves"] > 0
    assert STEPS["accepted"] > 0 and STEPS["refused"] > 0

"""Holds under real concurrency: threads on their own connections (and ``ledger_expire``
processes) placing, capturing, releasing and spending against one user at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, balance_snapshot, ledger_check
from core_ledger.services import entry_post, hold_capture, hold_place, hold_release
from core_ledger.testing import database_url, make_user, race, set_balance

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(result: Any) -> str:
    if isinstance(result, LedgerError):
        return result.code
    assert not isinstance(result, Exception), repr(result)
    return "ok"


def test_twenty_holds_of_ten_on_a_hundred_leave_ten_pending(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    results = race(
        20,
        lambda i: hold_place(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=10, actor=user
        ),
    )
    assert Counter(outcome(r) for r in results) == {"ok": 10, "insufficient_credits": 10}
    assert ledger.hold_model.objects.filter(user=user, status="pending").count() == 10
    snapshot = balance_snapshot(ledger=ledger, user_id=user.pk)
    assert (snapshot.balance, snapshot.held, snapshot.available) == (100, 100, 0)


def test_concurrent_capture_release_capture_of_one_hold_one_wins(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    for _ in range(5):  # a few rounds: the winner varies
        hold = hold_place(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=10, actor=user
        ).hold
        actions = [hold_capture, hold_release, hold_capture]

        def resolve(i: int, hold_id: int = hold.pk, actions: list[Any] = actions) -> Any:
            return actions[i](ledger=ledger, hold_id=hold_id, actor=user)

        results = race(3, resolve)
        assert Counter(outcome(r) for r in results) == {"ok": 1, "hold_not_pending": 2}
        stored = ledger.hold_model.objects.get(pk=hold.pk)
        assert stored.status in ("captured", "released")
        assert ledger.entry_model.objects.filter(hold_id=hold.pk).count() == (
            1 if stored.status == "captured" else 0
        )
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_concurrent_placements_with_one_key_place_one_hold(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    results = race(
        8,
        lambda i: hold_place(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=10,
            actor=user,
            idempotency_key="same",
        ),
    )
    assert all(outcome(r) == "ok" for r in results)
    assert len({r.hold.pk for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert balance_snapshot(ledger=ledger, user_id=user.pk).held == 10


def test_captures_spends_holds_and_ledger_expire_never_overdraw(ledger: AnyLedger) -> None:
    """Captures of existing holds race spends, new holds (some expiring mid-run), releases and
    two ``ledger_expire`` processes; every refusal is a clean code and nothing overdraws."""
    user = make_user()
    set_balance(ledger=ledger, user=user, to=60)
    entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=60,
        expires_at=timezone.now() + timedelta(seconds=1),
    )
    entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=40,
        expires_at=timezone.now() + timedelta(days=1),
    )
    holds = [
        hold_place(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=10,
            actor=user,
            expires_in=1 if i % 2 else 3600,
        ).hold
        for i in range(6)
    ]

    def act(i: int) -> Any:
        import time

        time.sleep((i % 8) * 0.15)
        kind = i % 4
        if kind == 0:
            return hold_capture(ledger=ledger, hold_id=holds[i % 6].pk, actor=user, amount=7)
        if kind == 1:
            return entry_post(
                ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=9, actor=user
            )
        if kind == 2:
            return hold_place(
                ledger=ledger,
                user_id=user.pk,
                operation=Op.CREDIT_SPEND,
                amount=8,
                actor=user,
                expires_in=1,
            )
        return hold_release(ledger=ledger, hold_id=holds[i % 6].pk, actor=user)

    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1"}
    sweepers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "ledger_expire", "--ledger", ledger.label],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = race(24, act)
    outputs = [sweeper.communicate(timeout=120) for sweeper in sweepers]
    assert all(s.returncode == 0 for s in sweepers), outputs
    codes = Counter(outcome(r) for r in results)
    assert set(codes) <= {"ok", "insufficient_credits", "hold_not_pending"}, codes
    assert codes["ok"] > 0
    # Once everything due is written down, the books balance.
    subprocess.run(
        [sys.executable, "manage.py", "ledger_expire", "--ledger", ledger.label],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
    )
    snapshot = balance_snapshot(ledger=ledger, user_id=user.pk)
    assert snapshot.balance == balance_get(ledger=ledger, user_id=user.pk) >= snapshot.held >= 0
    assert snapshot.available >= 0
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []

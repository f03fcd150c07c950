"""ledger_check finds each kind of broken invariant (so the after-test check can fail)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import ledger_check
from core_ledger.services import entry_post

pytestmark = pytest.mark.corrupts_ledger


def kinds(ledger: AnyLedger, user: Any) -> set[str]:
    return {d.kind for d in ledger_check(ledger=ledger, user_ids=[user.pk])}


def raw_entry(
    ledger: AnyLedger,
    user: Any,
    operation: str,
    amount: int,
    after: int,
    reverses: int | None = None,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount, balance_after,"
            " request_fingerprint, description, metadata, created_at, day, reverses_id)"
            " VALUES (%s, %s, %s, %s, '', '', '{}', clock_timestamp(), current_date, %s)",
            [user.pk, operation, amount, after, reverses],
        )


def test_a_sound_ledger_has_no_discrepancy(ledger: AnyLedger, user: Any) -> None:
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5)
    assert ledger_check(ledger=ledger) == []


def test_detects_a_balance_that_is_not_the_sum(ledger: AnyLedger, user: Any) -> None:
    ledger.balance_model.objects.filter(user=user).update(balance=12345)
    found = ledger_check(ledger=ledger, user_ids=[user.pk])
    assert [d.kind for d in found] == ["balance_mismatch"]
    assert "12345" in str(found[0])


def test_detects_a_broken_chain(ledger: AnyLedger, user: Any) -> None:
    signup = ledger.fixed_amount(Op.SIGNUP_CREDIT) or 0
    raw_entry(ledger, user, Op.CREDIT_ADD, 5, signup + 6)  # should be signup + 5
    ledger.balance_model.objects.filter(user=user).update(balance=signup + 5)
    assert kinds(ledger, user) == {"broken_chain"}


def test_detects_a_reversal_of_another_users_entry(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    credit = entry_post(
        ledger=ledger, user_id=other_user.pk, operation=Op.CREDIT_ADD, amount=5
    ).entry
    signup = ledger.fixed_amount(Op.SIGNUP_CREDIT) or 0
    raw_entry(ledger, user, Op.REVERSAL, -5, signup - 5, reverses=credit.pk)
    ledger.balance_model.objects.filter(user=user).update(balance=signup - 5)
    assert kinds(ledger, user) == {"bad_reversal"}

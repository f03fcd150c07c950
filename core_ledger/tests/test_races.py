"""Races with real concurrent connections: threads, each with its own database connection."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, ledger_check
from core_ledger.services import entry_post
from core_ledger.testing import make_user, race, set_balance

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(result: Any) -> str:
    if isinstance(result, LedgerError):
        return result.code
    if isinstance(result, Exception):
        return f"unexpected {type(result).__name__}: {result}"
    return "replayed" if result.replayed else "posted"


def test_forty_concurrent_spends_never_overdraw(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    results = race(
        40,
        lambda i: entry_post(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=10, actor=user
        ),
    )
    counts = Counter(outcome(r) for r in results)
    assert counts == {"posted": 10, "insufficient_credits": 30}
    assert balance_get(ledger=ledger, user_id=user.pk) == 0
    spends = ledger.entry_model.objects.filter(user=user, operation=Op.CREDIT_SPEND)
    assert spends.count() == 10
    assert sorted(spends.values_list("balance_after", flat=True)) == list(range(0, 100, 10))
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_twenty_concurrent_posts_with_one_key_post_once(ledger: AnyLedger) -> None:
    user = make_user()
    before = balance_get(ledger=ledger, user_id=user.pk)
    results = race(
        20,
        lambda i: entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=1,
            actor=user,
            idempotency_key="pay-once",
        ),
    )
    counts = Counter(outcome(r) for r in results)
    assert counts == {"posted": 1, "replayed": 19}
    assert len({r.entry.pk for r in results}) == 1
    assert ledger.entry_model.objects.filter(user=user, idempotency_key="pay-once").count() == 1
    assert balance_get(ledger=ledger, user_id=user.pk) == before - 1


def test_twenty_concurrent_daily_claims_pay_once(ledger: AnyLedger) -> None:
    user = make_user()
    before = balance_get(ledger=ledger, user_id=user.pk)
    results = race(
        20,
        lambda i: entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user),
    )
    counts = Counter(outcome(r) for r in results)
    assert counts == {"posted": 1, "already_claimed": 19}
    assert ledger.entry_model.objects.filter(user=user, operation=Op.DAILY_REWARD).count() == 1
    assert balance_get(ledger=ledger, user_id=user.pk) == before + (
        ledger.fixed_amount(Op.DAILY_REWARD) or 0
    )


def test_concurrent_credits_and_spends_keep_the_chain(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=50)

    def act(i: int) -> Any:
        if i % 2:
            return entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=3)
        return entry_post(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=5, actor=user
        )

    results = race(30, act)
    posted = [r.entry for r in results if not isinstance(r, Exception)]
    expected = 50 + sum(e.amount for e in posted)
    assert balance_get(ledger=ledger, user_id=user.pk) == expected
    assert all(outcome(r) in {"posted", "insufficient_credits"} for r in results)
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []

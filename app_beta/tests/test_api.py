"""Beta's own operations over its REST API: purchases by shoppers, referral bonuses by staff."""

from __future__ import annotations

import pytest

from app_beta.operations import BetaOperation
from core_ledger.ledger import registry
from core_ledger.selectors import balance_get
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, token_client

pytestmark = pytest.mark.django_db
BETA = registry.get("beta")


def test_shopper_makes_a_purchase() -> None:
    shopper = make_user()
    set_balance(ledger=BETA, user=shopper, to=30)
    response = token_client(shopper).post(
        "/api/beta/entries/",
        {"operation": BetaOperation.PURCHASE, "amount": 30, "description": "basket 17"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == -30
    assert response.json()["balance_after"] == 0
    again = token_client(shopper).post(
        "/api/beta/entries/", {"operation": BetaOperation.PURCHASE, "amount": 1}, format="json"
    )
    assert again.status_code == 409
    assert error_code(again) == "insufficient_credits"
    assert balance_get(ledger=BETA, user_id=shopper.pk) == 0


def test_referral_bonus_is_staff_only() -> None:
    shopper = make_user()
    before = balance_get(ledger=BETA, user_id=shopper.pk)
    refused = token_client(shopper).post(
        "/api/beta/entries/",
        {"operation": BetaOperation.REFERRAL_BONUS, "amount": 20},
        format="json",
    )
    assert refused.status_code == 403
    assert error_code(refused) == "operation_not_allowed"
    staff = make_user(staff=True, operator=True)
    granted = token_client(staff).post(
        "/api/beta/entries/",
        {"operation": BetaOperation.REFERRAL_BONUS, "amount": 20, "user": shopper.pk},
        format="json",
        headers={"Idempotency-Key": f"referral-{shopper.pk}"},
    )
    assert granted.status_code == 201
    assert balance_get(ledger=BETA, user_id=shopper.pk) == before + 20


def test_alpha_operations_are_not_beta_operations() -> None:
    shopper = make_user()
    response = token_client(shopper).post(
        "/api/beta/entries/", {"operation": "GAME_ENTRY_FEE", "amount": 1}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"


def test_beta_daily_reward_is_five() -> None:
    shopper = make_user()
    response = token_client(shopper).post(
        "/api/beta/entries/", {"operation": "DAILY_REWARD"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["amount"] == 5

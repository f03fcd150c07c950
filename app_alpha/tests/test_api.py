"""Alpha's own operations over its REST API: game entry fees by players, game wins by staff."""

from __future__ import annotations

import pytest

from app_alpha.operations import AlphaOperation
from core_ledger.ledger import registry
from core_ledger.selectors import balance_get
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, token_client

pytestmark = pytest.mark.django_db
ALPHA = registry.get("alpha")


def test_player_pays_a_game_entry_fee() -> None:
    player = make_user()
    set_balance(ledger=ALPHA, user=player, to=25)
    response = token_client(player).post(
        "/api/alpha/entries/",
        {"operation": AlphaOperation.GAME_ENTRY_FEE, "amount": 10, "metadata": {"game": "g1"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == -10
    assert balance_get(ledger=ALPHA, user_id=player.pk) == 15


def test_game_win_is_staff_only() -> None:
    player = make_user()
    before = balance_get(ledger=ALPHA, user_id=player.pk)
    refused = token_client(player).post(
        "/api/alpha/entries/", {"operation": AlphaOperation.GAME_WIN, "amount": 50}, format="json"
    )
    assert refused.status_code == 403
    assert error_code(refused) == "operation_not_allowed"
    assert balance_get(ledger=ALPHA, user_id=player.pk) == before

    staff = make_user(staff=True, operator=True)
    won = token_client(staff).post(
        "/api/alpha/entries/",
        {"operation": AlphaOperation.GAME_WIN, "amount": 50, "user": player.pk},
        format="json",
    )
    assert won.status_code == 201
    assert balance_get(ledger=ALPHA, user_id=player.pk) == before + 50


def test_beta_operations_are_not_alpha_operations() -> None:
    player = make_user()
    response = token_client(player).post(
        "/api/alpha/entries/", {"operation": "PURCHASE", "amount": 1}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "operation" in response.json()["error"]["details"]


def test_alpha_amounts_in_the_ledger_list() -> None:
    player = make_user()
    body = token_client(player).get("/api/ledgers/").json()
    alpha = next(x for x in body if x["label"] == "alpha")
    ops = {op["value"]: op for op in alpha["operations"]}
    assert ops["SIGNUP_CREDIT"]["fixed_amount"] == 100
    assert ops["DAILY_REWARD"]["fixed_amount"] == 10
    assert ops["GAME_WIN"] == {
        "value": "GAME_WIN",
        "label": "Game win",
        "direction": "credit",
        "posted_by": "staff",
        "frequency": "any",
        "fixed_amount": None,
        "expires_after": None,
    }
    assert ops["DAILY_REWARD"]["expires_after"] == 7 * 24 * 3600  # "valid for a week"
    assert ops["GAME_ENTRY_FEE"]["direction"] == "debit"
    assert ops["GAME_ENTRY_FEE"]["posted_by"] == "user"

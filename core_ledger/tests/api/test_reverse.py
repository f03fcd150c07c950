"""POST /api/<ledger>/entries/<id>/reverse/: staff and services only, once per entry."""

from __future__ import annotations

from typing import Any

import pytest

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, holding, token_client, url

pytestmark = pytest.mark.django_db


def _spend(ledger: AnyLedger, user: Any, amount: int) -> int:
    return int(
        entry_post(ledger=ledger, user_id=user.pk, operation="CREDIT_SPEND", amount=amount).entry.pk
    )


def test_staff_reverses_once(ledger: AnyLedger, user: Any, staff: Any, staff_api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    entry_id = _spend(ledger, user, 20)
    response = staff_api.post(url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "refund"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["operation"] == "REVERSAL"
    assert body["amount"] == 20 and body["reverses"] == entry_id
    assert body["description"] == "refund" and body["created_by"] == staff.pk
    assert balance_get(ledger=ledger, user_id=user.pk) == 50
    original = staff_api.get(url(ledger, f"entries/{entry_id}/")).json()
    assert original["reversed_by"] == body["id"]

    count = ledger.entry_model.objects.count()
    again = staff_api.post(url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "again"})
    assert again.status_code == 409
    assert error_code(again) == "already_reversed"
    reversal = staff_api.post(url(ledger, f"entries/{body['id']}/reverse/"), {"reason": "x"})
    assert reversal.status_code == 409  # a state conflict, not a permission
    assert error_code(reversal) == "cannot_reverse_reversal"
    assert ledger.entry_model.objects.count() == count


def test_reversing_a_spent_credit_is_409(ledger: AnyLedger, user: Any, staff_api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=0)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation="CREDIT_ADD", amount=30).entry
    _spend(ledger, user, 25)
    count = ledger.entry_model.objects.count()
    response = staff_api.post(url(ledger, f"entries/{credit.pk}/reverse/"), {"reason": "fraud"})
    assert response.status_code == 409
    assert error_code(response) == "insufficient_credits"
    assert ledger.entry_model.objects.count() == count


def test_reverse_entry_permission_may_reverse(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    entry_id = _spend(ledger, user, 3)
    response = token_client(holding(ledger, "reverse_entry")).post(
        url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "undo"}
    )
    assert response.status_code == 201


def test_posting_rights_or_staff_alone_may_not_reverse(
    ledger: AnyLedger, user: Any, service: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    entry_id = _spend(ledger, user, 3)
    for caller in (service, make_user(staff=True), holding(ledger, "view_all_accounts")):
        response = token_client(caller).post(
            url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "undo"}
        )
        assert response.status_code == 403
        assert error_code(response) == "operation_not_allowed"
    assert not ledger.entry_model.objects.filter(reverses_id=entry_id).exists()


def test_regular_user_cannot_reverse(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    mine = _spend(ledger, user, 3)
    set_balance(ledger=ledger, user=other_user, to=10)
    theirs = _spend(ledger, other_user, 3)
    count = ledger.entry_model.objects.count()
    for entry_id in (mine, theirs):
        response = api.post(url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "please"})
        assert response.status_code == 403
        assert error_code(response) == "operation_not_allowed"
    assert ledger.entry_model.objects.count() == count


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "r" * 501}, {"reason": 5.5}]
)
def test_reason_is_required(
    ledger: AnyLedger, user: Any, staff_api: Any, body: dict[str, Any]
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    entry_id = _spend(ledger, user, 3)
    count = ledger.entry_model.objects.count()
    response = staff_api.post(url(ledger, f"entries/{entry_id}/reverse/"), body)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "reason" in response.json()["error"]["details"]
    assert ledger.entry_model.objects.count() == count


def test_unknown_entry_is_404(ledger: AnyLedger, staff_api: Any) -> None:
    for entry_id in (999_999_999, 2**63, 10**25):
        response = staff_api.post(url(ledger, f"entries/{entry_id}/reverse/"), {"reason": "x"})
        assert response.status_code == 404
        assert error_code(response) == "not_found"

"""Expiring credits over the API: expires_at on posts, drawn_from, available and expiring."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post
from core_ledger.testing import make_user
from core_ledger.tests.api.conftest import error_code, token_client, url

pytestmark = pytest.mark.django_db


def test_a_service_posts_an_expiring_credit_and_the_user_sees_it_expiring(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    operator = token_client(make_user(operator=True))
    expires_at = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    response = operator.post(
        url(ledger, "entries/"),
        {
            "operation": "CREDIT_ADD",
            "amount": 12,
            "user": user.pk,
            "expires_at": expires_at.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["expires_at"].replace("Z", "+00:00") == expires_at.isoformat()
    assert body["drawn_from"] is None
    balance = api.get(url(ledger, "balance/")).json()
    assert balance["available"] == balance["balance"]
    assert balance["expiring"] == [
        {"entry": body["id"], "amount": 12, "expires_at": body["expires_at"]}
    ]

    spent = api.post(
        url(ledger, "entries/"), {"operation": "CREDIT_SPEND", "amount": 15}, format="json"
    ).json()
    assert spent["drawn_from"] == [
        {"entry": body["id"], "amount": 12},
        {"entry": None, "amount": 3},
    ]
    detail = api.get(url(ledger, f"entries/{spent['id']}/")).json()
    assert detail["drawn_from"] == spent["drawn_from"]


@pytest.mark.parametrize(
    ("who", "body"),
    [
        ("user", {"operation": "DAILY_REWARD"}),  # a regular user may not choose an expiry
        ("operator", {"operation": "CREDIT_SPEND", "amount": 1}),  # a debit does not expire
        ("operator", {"operation": "CREDIT_ADD", "amount": 1}),  # in the past
        ("operator", {"operation": "CREDIT_ADD", "amount": 1, "expires_at": "not a time"}),
    ],
)
def test_bad_expires_at_is_400_and_writes_nothing(
    ledger: AnyLedger, user: Any, api: Any, who: str, body: dict[str, Any]
) -> None:
    client = api if who == "user" else token_client(make_user(operator=True))
    body = {"user": user.pk, **body}
    body.setdefault(
        "expires_at",
        (
            timezone.now()
            + (
                timedelta(days=1)
                if who == "user" or body["operation"] == "CREDIT_SPEND"
                else -timedelta(days=1)
            )
        ).isoformat(),
    )
    count = ledger.entry_model.objects.filter(user=user).count()
    response = client.post(url(ledger, "entries/"), body, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert "expires_at" in response.json()["error"]["details"]
    assert ledger.entry_model.objects.filter(user=user).count() == count


def test_expired_credits_are_not_available_and_a_spend_of_them_is_409(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    plain = api.get(url(ledger, "balance/")).json()["balance"]
    lot = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=30,
        expires_at=timezone.now() + timedelta(milliseconds=300),
    ).entry
    time.sleep(max(0.0, (lot.expires_at - timezone.now()).total_seconds()) + 0.05)
    balance = api.get(url(ledger, "balance/")).json()
    assert (balance["balance"], balance["available"], balance["expiring"]) == (
        plain + 30,
        plain,
        [],
    )
    refused = api.post(
        url(ledger, "entries/"), {"operation": "CREDIT_SPEND", "amount": plain + 1}, format="json"
    )
    assert refused.status_code == 409 and error_code(refused) == "insufficient_credits"


def test_reversing_an_expiry_is_409(ledger: AnyLedger, user: Any) -> None:
    from core_ledger.services.lots import lots_expire

    lot = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=3,
        expires_at=timezone.now() + timedelta(milliseconds=200),
    ).entry
    time.sleep(max(0.0, (lot.expires_at - timezone.now()).total_seconds()) + 0.05)
    lots_expire(ledger=ledger)
    expiry = ledger.entry_model.objects.get(user=user, operation="EXPIRY")
    operator = token_client(make_user(operator=True))
    response = operator.post(url(ledger, f"entries/{expiry.pk}/reverse/"), {"reason": "no"})
    assert response.status_code == 409
    assert error_code(response) == "cannot_reverse_expiry"

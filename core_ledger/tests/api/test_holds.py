"""Holds over the API: place, capture, release, read and list them; balance's held/available;
who sees and resolves which hold; idempotency keys; the error codes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core_ledger.ledger import AnyLedger
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, holding, token_client, url

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "user",
    "operation",
    "amount",
    "status",
    "captured_amount",
    "entry",
    "expires_at",
    "created_by",
    "created_at",
    "resolved_at",
    "description",
    "metadata",
    "idempotency_key",
}


def place(client: Any, ledger: AnyLedger, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(url(ledger, "holds/"), body, format="json", **headers)


def test_place_capture_and_read_a_hold(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    response = place(
        api,
        ledger,
        {"operation": "CREDIT_SPEND", "amount": 30, "description": "match", "metadata": {"m": 1}},
    )
    assert response.status_code == 201, response.content
    hold = response.json()
    assert set(hold) == FIELDS
    assert (hold["status"], hold["amount"], hold["user"], hold["created_by"]) == (
        "pending",
        30,
        user.pk,
        user.pk,
    )
    assert hold["entry"] is None and hold["captured_amount"] is None
    assert hold["resolved_at"] is None and hold["metadata"] == {"m": 1}
    balance = api.get(url(ledger, "balance/")).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (100, 30, 70)

    captured = api.post(url(ledger, f"holds/{hold['id']}/capture/"), {"amount": 20}, format="json")
    assert captured.status_code == 200, captured.content
    body = captured.json()
    assert (body["status"], body["captured_amount"]) == ("captured", 20)
    entry = api.get(url(ledger, f"entries/{body['entry']}/")).json()
    assert (entry["amount"], entry["operation"], entry["balance_after"]) == (
        -20,
        "CREDIT_SPEND",
        80,
    )
    assert entry["hold"] == hold["id"]
    balance = api.get(url(ledger, "balance/")).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (80, 0, 80)
    assert api.get(url(ledger, f"holds/{hold['id']}/")).json() == body


def test_release_and_a_second_resolution_is_409(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(api, ledger, {"operation": "CREDIT_SPEND", "amount": 30}).json()
    released = api.post(url(ledger, f"holds/{hold['id']}/release/"))
    assert released.status_code == 200, released.content
    assert released.json()["status"] == "released"
    for action in ("release", "capture"):
        again = api.post(url(ledger, f"holds/{hold['id']}/{action}/"), {}, format="json")
        assert again.status_code == 409 and error_code(again) == "hold_not_pending"
        assert again.json()["error"]["details"] == {"status": "released"}


def test_beyond_available_is_409_insufficient_credits(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    response = place(api, ledger, {"operation": "CREDIT_SPEND", "amount": 11})
    assert response.status_code == 409 and error_code(response) == "insufficient_credits"
    assert not ledger.hold_model.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"operation": "CREDIT_SPEND"},
        {"operation": "CREDIT_SPEND", "amount": 0},
        {"operation": "CREDIT_SPEND", "amount": "5"},
        {"operation": "CREDIT_SPEND", "amount": 5, "expires_in": 0},
        {"operation": "CREDIT_SPEND", "amount": 5, "expires_in": 604801},
        {"operation": "CREDIT_ADD", "amount": 5},  # not a debit
        {"operation": "EXPIRY", "amount": 5},
        {"operation": "NOPE", "amount": 5},
        {"operation": "CREDIT_SPEND", "amount": 5, "metadata": []},
    ],
)
def test_bad_bodies_are_400(ledger: AnyLedger, user: Any, api: Any, body: Any) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    response = place(api, ledger, body)
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert not ledger.hold_model.objects.exists()


@pytest.mark.parametrize("amount", [0, 31, "3"])
def test_a_capture_amount_outside_one_to_the_hold_is_400(
    ledger: AnyLedger, user: Any, api: Any, amount: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(api, ledger, {"operation": "CREDIT_SPEND", "amount": 30}).json()
    response = api.post(
        url(ledger, f"holds/{hold['id']}/capture/"), {"amount": amount}, format="json"
    )
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert ledger.hold_model.objects.get(pk=hold["id"]).status == "pending"


def test_idempotency_key_replays_and_refuses_reuse(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    body = {"operation": "CREDIT_SPEND", "amount": 10}
    first = place(api, ledger, body, HTTP_IDEMPOTENCY_KEY="abc")
    again = place(api, ledger, body, HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json() and first.json()["idempotency_key"] == "abc"
    other = place(api, ledger, {**body, "amount": 11}, HTTP_IDEMPOTENCY_KEY="abc")
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    hold_id = first.json()["id"]
    c1 = api.post(
        url(ledger, f"holds/{hold_id}/capture/"), {}, format="json", HTTP_IDEMPOTENCY_KEY="c"
    )
    c2 = api.post(
        url(ledger, f"holds/{hold_id}/capture/"), {}, format="json", HTTP_IDEMPOTENCY_KEY="c"
    )
    assert c1.status_code == c2.status_code == 200
    assert c2.headers["Idempotent-Replayed"] == "true" and c2.json() == c1.json()
    assert ledger.hold_model.objects.filter(user=user).count() == 1
    assert ledger.entry_model.objects.filter(hold_id=hold_id).count() == 1


def test_who_sees_and_resolves_which_hold(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    service = token_client(holding(ledger, "post_any_entry"))
    viewer = token_client(holding(ledger, "view_all_accounts"))
    stranger = token_client(make_user())
    placed = place(service, ledger, {"operation": "CREDIT_SPEND", "amount": 10, "user": user.pk})
    assert placed.status_code == 201, placed.content
    hold_id = placed.json()["id"]
    assert api.get(url(ledger, f"holds/{hold_id}/")).status_code == 200  # the account holder
    assert viewer.get(url(ledger, f"holds/{hold_id}/")).status_code == 200
    missing = stranger.get(url(ledger, f"holds/{hold_id}/"))
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    assert stranger.post(url(ledger, f"holds/{hold_id}/release/")).status_code == 404
    assert stranger.get(url(ledger, "holds/")).json()["results"] == []
    # The account holder cannot release a hold a service placed on them, nor a viewer.
    for client in (api, viewer):
        refused = client.post(url(ledger, f"holds/{hold_id}/release/"))
        assert refused.status_code == 403 and error_code(refused) == "operation_not_allowed"
    assert service.post(url(ledger, f"holds/{hold_id}/release/")).status_code == 200
    # A user may not place a hold on someone else's account.
    other = place(stranger, ledger, {"operation": "CREDIT_SPEND", "amount": 1, "user": user.pk})
    assert other.status_code == 403 and error_code(other) == "operation_not_allowed"


def test_list_filters_by_status_and_user_and_pages_by_cursor(
    ledger: AnyLedger, user: Any, api: Any, other_user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    set_balance(ledger=ledger, user=other_user, to=100)
    ids = [
        place(api, ledger, {"operation": "CREDIT_SPEND", "amount": 1}).json()["id"]
        for _ in range(5)
    ]
    api.post(url(ledger, f"holds/{ids[0]}/release/"))
    api.post(url(ledger, f"holds/{ids[1]}/capture/"), {}, format="json")
    short = place(api, ledger, {"operation": "CREDIT_SPEND", "amount": 1, "expires_in": 1}).json()
    token_client(other_user).post(
        url(ledger, "holds/"), {"operation": "CREDIT_SPEND", "amount": 1}, format="json"
    )
    short_expiry = parse_datetime(short["expires_at"])
    assert short_expiry is not None
    time.sleep(max(0.0, (short_expiry - timezone.now()).total_seconds()) + 0.1)

    def listed(client: Any, query: str) -> list[int]:
        return [h["id"] for h in client.get(url(ledger, f"holds/?{query}")).json()["results"]]

    assert listed(api, "") == [short["id"], *reversed(ids)]
    assert listed(api, "status=pending") == [ids[4], ids[3], ids[2]]
    assert listed(api, "status=expired") == [short["id"]]
    assert listed(api, "status=released") == [ids[0]]
    assert listed(api, "status=captured") == [ids[1]]
    expired = api.get(url(ledger, f"holds/{short['id']}/")).json()
    assert expired["status"] == "expired" and expired["resolved_at"] == short["expires_at"]
    page = api.get(url(ledger, "holds/?page_size=2")).json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api.get(page["next"]).json()
    assert [h["id"] for h in rest["results"]] == [ids[3], ids[2]]
    viewer = token_client(holding(ledger, "view_all_accounts"))
    assert len(listed(viewer, f"user={other_user.pk}")) == 1
    assert len(listed(viewer, "")) == 7
    for bad in ("status=nope", "status=", "user=x", "page_size=0", "cursor=zzz"):
        response = api.get(url(ledger, f"holds/?{bad}"))
        assert response.status_code == 400 and error_code(response) == "validation_error", bad


def test_the_capture_entry_names_its_hold_in_the_schema_links(ledger: AnyLedger, api: Any) -> None:
    schema = api.get("/api/schema/?format=json").json()
    placed = schema["paths"][f"/api/{ledger.label}/holds/"]["post"]["responses"]["201"]
    assert set(placed["links"]) == {"GetHold", "CaptureHold", "ReleaseHold"}
    hold = schema["components"]["schemas"][f"{ledger.label.capitalize()}Hold"]
    assert hold["properties"]["status"]["enum"] == ["pending", "captured", "released", "expired"]

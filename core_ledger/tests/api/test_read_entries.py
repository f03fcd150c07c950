"""GET entries: visibility, filters, and cursor pagination that neither repeats nor skips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation
from core_ledger.services import entry_post
from core_ledger.testing import make_user
from core_ledger.tests.api.conftest import error_code, holding, token_client, url

pytestmark = pytest.mark.django_db


def _credit(ledger: AnyLedger, user: Any, amount: int = 1) -> int:
    result = entry_post(
        ledger=ledger, user_id=user.pk, operation=SharedOperation.CREDIT_ADD, amount=amount
    )
    return int(result.entry.pk)


def test_user_sees_only_own_entries(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    mine = _credit(ledger, user)
    theirs = _credit(ledger, other_user)
    response = api.get(url(ledger, "entries/"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    users = {e["user"] for e in body["results"]}
    assert users == {user.pk}
    ids = [e["id"] for e in body["results"]]
    assert mine in ids and theirs not in ids
    assert ids == sorted(ids, reverse=True)  # newest first

    # ?user= cannot widen a regular user's view
    response = api.get(url(ledger, "entries/"), {"user": other_user.pk})
    assert response.status_code == 200 and response.json()["results"] == []


def test_another_users_entry_is_404(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    theirs = _credit(ledger, other_user)
    response = api.get(url(ledger, f"entries/{theirs}/"))
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    mine = _credit(ledger, user)
    response = api.get(url(ledger, f"entries/{mine}/"))
    assert response.status_code == 200
    assert response.json()["id"] == mine and response.json()["amount"] == 1


@pytest.mark.parametrize("entry_id", ["999999999", str(2**63), str(10**30)])
def test_unknown_entry_is_404(ledger: AnyLedger, staff_api: Any, entry_id: str) -> None:
    response = staff_api.get(url(ledger, f"entries/{entry_id}/"))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_non_numeric_entry_path_is_json_404(ledger: AnyLedger, api: Any) -> None:
    response = api.get(url(ledger, "entries/abc/"))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_operators_and_view_all_accounts_see_everyone(
    ledger: AnyLedger, user: Any, other_user: Any, staff_api: Any
) -> None:
    a, b = _credit(ledger, user), _credit(ledger, other_user)
    for client in (staff_api, token_client(holding(ledger, "view_all_accounts"))):
        ids = [e["id"] for e in client.get(url(ledger, "entries/")).json()["results"]]
        assert a in ids and b in ids
        only = client.get(url(ledger, "entries/"), {"user": other_user.pk}).json()["results"]
        assert only and {e["user"] for e in only} == {other_user.pk}
        assert client.get(url(ledger, f"entries/{a}/")).status_code == 200


def test_staff_or_posting_rights_alone_see_only_their_own_entries(
    ledger: AnyLedger, user: Any, other_user: Any, service: Any
) -> None:
    a = _credit(ledger, user)
    for caller in (service, make_user(staff=True)):
        client = token_client(caller)
        ids = [e["id"] for e in client.get(url(ledger, "entries/")).json()["results"]]
        assert a not in ids
        assert client.get(url(ledger, f"entries/{a}/")).status_code == 404


def test_filters(ledger: AnyLedger, user: Any, api: Any) -> None:
    _credit(ledger, user, 3)
    response = api.get(url(ledger, "entries/"), {"operation": "SIGNUP_CREDIT"})
    results = response.json()["results"]
    assert [e["operation"] for e in results] == ["SIGNUP_CREDIT"]

    now = timezone.now()
    later = api.get(
        url(ledger, "entries/"), {"created_after": (now + timedelta(hours=1)).isoformat()}
    )
    assert later.json()["results"] == []
    earlier = api.get(
        url(ledger, "entries/"), {"created_before": (now - timedelta(days=1)).isoformat()}
    )
    assert earlier.json()["results"] == []
    window = api.get(
        url(ledger, "entries/"),
        {
            "created_after": (now - timedelta(hours=1)).isoformat(),
            "created_before": (now + timedelta(hours=1)).isoformat(),
        },
    )
    assert len(window.json()["results"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"operation": "NOPE"},
        {"created_after": "yesterday"},
        {"created_before": "2026-13-45"},
        {"user": "abc"},
        {"user": "1.5"},
        {"cursor": "garbage"},
    ],
)
def test_bad_query_parameters_are_400(
    ledger: AnyLedger, staff_api: Any, params: dict[str, str]
) -> None:
    response = staff_api.get(url(ledger, "entries/"), params)
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert set(response.json()["error"]["details"]) <= {*params, "non_field_errors"}


def test_page_size_is_1_to_500_and_anything_else_is_a_400(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    for _ in range(600):
        _credit(ledger, user)
    response = api.get(url(ledger, "entries/"), {"page_size": 500})
    assert len(response.json()["results"]) == 500
    response = api.get(url(ledger, "entries/"), {"page_size": 7})
    assert len(response.json()["results"]) == 7
    assert len(api.get(url(ledger, "entries/")).json()["results"]) == 50  # the default
    for bad in ("0", "-3", "x", "501", "10000"):
        response = api.get(url(ledger, "entries/"), {"page_size": bad})
        assert response.status_code == 400, bad
        assert error_code(response) == "validation_error"
        assert "page_size" in response.json()["error"]["details"]


def test_pagination_neither_repeats_nor_skips_while_entries_arrive(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    initial = [_credit(ledger, user) for _ in range(23)]
    seen: list[int] = []
    inserted_during: list[int] = []
    next_url: str | None = url(ledger, "entries/") + "?page_size=5"
    while next_url:
        page = api.get(next_url)
        assert page.status_code == 200
        seen.extend(e["id"] for e in page.json()["results"])
        next_url = page.json()["next"]
        # Writes between page fetches: newer than the cursor, so they never appear mid-walk.
        inserted_during.append(_credit(ledger, user))
    expected = sorted([*initial, *_signup_ids(ledger, user)], reverse=True)
    assert seen == expected  # every entry once, newest first, none repeated, none skipped
    assert not set(inserted_during) & set(seen)
    # The newest entries are on a fresh first page.
    first = api.get(url(ledger, "entries/") + "?page_size=5").json()["results"]
    assert [e["id"] for e in first] == sorted(inserted_during, reverse=True)[:5]


def _signup_ids(ledger: AnyLedger, user: Any) -> list[int]:
    return list(
        ledger.entry_model.objects.filter(user=user, operation="SIGNUP_CREDIT").values_list(
            "id", flat=True
        )
    )


def test_previous_link_walks_back(ledger: AnyLedger, user: Any, api: Any) -> None:
    for _ in range(6):
        _credit(ledger, user)
    first = api.get(url(ledger, "entries/") + "?page_size=3").json()
    second = api.get(first["next"]).json()
    back = api.get(second["previous"]).json()
    assert [e["id"] for e in back["results"]] == [e["id"] for e in first["results"]]


def test_session_auth_reads_too(ledger: AnyLedger, user: Any) -> None:
    from core_ledger.tests.api.conftest import session_client

    client = session_client(user)
    response = client.get(url(ledger, "entries/"))
    assert response.status_code == 200
    assert {e["user"] for e in response.json()["results"]} == {user.pk}
    other = make_user()
    theirs = _credit(ledger, other)
    assert client.get(url(ledger, f"entries/{theirs}/")).status_code == 404


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"created_after": "0205-12-29T08:35:31+19:21"}, 200),
        ({"created_before": "2026-01-01T00:00:00-23:59"}, 200),
        ({"created_after": "0001-01-01T00:00:00+05:00"}, 400),
    ],
)
def test_odd_moments_in_filters(
    ledger: AnyLedger, api: Any, params: dict[str, str], status: int
) -> None:
    response = api.get(url(ledger, "entries/"), params)
    assert response.status_code == status, response.content

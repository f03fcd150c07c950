"""Balance endpoints: the caller's (now and ``?at=``), every ledger's, and the staff views."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core_ledger.ledger import AnyLedger, registry
from core_ledger.operations import SharedOperation
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, holding, token_client, url

pytestmark = pytest.mark.django_db


def test_my_balance(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=42)
    response = api.get(url(ledger, "balance/"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user", "balance", "updated_at", "held", "available", "expiring"}
    assert body["user"] == user.pk and body["balance"] == 42
    assert body["available"] == 42 and body["expiring"] == [] and body["held"] == 0
    assert parse_datetime(body["updated_at"]) is not None


def test_balance_at_a_past_moment(ledger: AnyLedger, user: Any, api: Any) -> None:
    signup = ledger.fixed_amount(SharedOperation.SIGNUP_CREDIT) or 0
    first = entry_post(ledger=ledger, user_id=user.pk, operation="CREDIT_ADD", amount=10).entry
    between = timezone.now()
    entry_post(ledger=ledger, user_id=user.pk, operation="CREDIT_SPEND", amount=4)
    assert between >= first.created_at

    at_between = api.get(url(ledger, "balance/"), {"at": between.isoformat()})
    assert at_between.status_code == 200, at_between.content
    assert at_between.json()["balance"] == signup + 10
    assert parse_datetime(at_between.json()["updated_at"]) == first.created_at

    before_all = api.get(url(ledger, "balance/"), {"at": "2000-01-01T00:00:00Z"})
    assert before_all.json() == {
        "user": user.pk,
        "balance": 0,
        "updated_at": None,
        "held": 0,
        "available": 0,
        "expiring": [],
    }

    future = api.get(
        url(ledger, "balance/"), {"at": (timezone.now() + timedelta(days=1)).isoformat()}
    )
    assert future.json()["balance"] == signup + 6 == balance_get(ledger=ledger, user_id=user.pk)

    # An offset other than UTC means the same moment.
    as_plus_two = between.astimezone(timezone.get_fixed_timezone(120)).isoformat()
    assert api.get(url(ledger, "balance/"), {"at": as_plus_two}).json()["balance"] == signup + 10


@pytest.mark.parametrize("at", ["yesterday", "2026-02-30T00:00:00Z", "12345678901234567890", "1e9"])
def test_invalid_at_is_400(ledger: AnyLedger, api: Any, at: str) -> None:
    response = api.get(url(ledger, "balance/"), {"at": at})
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "at" in response.json()["error"]["details"]


def test_all_my_balances(user: Any, api: Any) -> None:
    ledgers = list(registry)
    set_balance(ledger=ledgers[0], user=user, to=15)
    set_balance(ledger=ledgers[1], user=user, to=0)
    response = api.get("/api/balances/")
    assert response.status_code == 200
    assert response.json() == {ledgers[0].label: 15, ledgers[1].label: 0} | {
        x.label: balance_get(ledger=x, user_id=user.pk) for x in ledgers[2:]
    }


def test_staff_balances_list_order_and_filter(ledger: AnyLedger, staff_api: Any) -> None:
    users = [make_user() for _ in range(3)]
    for u, amount in zip(users, (300, 100, 200), strict=True):
        set_balance(ledger=ledger, user=u, to=amount)
    ids = {u.pk for u in users}
    response = staff_api.get(url(ledger, "balances/"), {"ordering": "-balance", "page_size": 500})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    ours = [r for r in body["results"] if r["user"] in ids]
    assert [r["balance"] for r in ours] == [300, 200, 100]
    balances = [r["balance"] for r in body["results"]]
    assert balances == sorted(balances, reverse=True)

    by_time = staff_api.get(url(ledger, "balances/"), {"ordering": "updated_at", "page_size": 500})
    stamps = [r["updated_at"] for r in by_time.json()["results"]]
    assert stamps == sorted(stamps)

    one = staff_api.get(url(ledger, "balances/"), {"user": users[1].pk}).json()["results"]
    assert [(r["user"], r["balance"]) for r in one] == [(users[1].pk, 100)]

    detail = staff_api.get(url(ledger, f"balances/{users[2].pk}/"))
    assert detail.status_code == 200
    assert detail.json()["balance"] == 200 and detail.json()["user"] == users[2].pk


def test_staff_balances_paging_is_stable_on_ties(ledger: AnyLedger, staff_api: Any) -> None:
    users = [make_user() for _ in range(7)]
    for u in users:
        set_balance(ledger=ledger, user=u, to=77)
    seen: list[int] = []
    next_url: str | None = url(ledger, "balances/") + "?ordering=balance&page_size=2"
    while next_url:
        page = staff_api.get(next_url).json()
        seen.extend(r["user"] for r in page["results"])
        next_url = page["next"]
    assert len(seen) == len(set(seen)) == ledger.balance_model.objects.count()


@pytest.mark.parametrize(
    "params",
    [
        # An unknown ordering field is a 400 (DRF would ignore it): the schema lists the fields.
        {"ordering": "password"},
        {"ordering": ""},
        {"ordering": "balance,"},
        {"page": "999"},
        {"page": ""},
        {"page_size": ""},
        {"user": "x"},
        {"user": ""},
        {"user": str(2**63)},
        {"page": "0"},
    ],
)
def test_staff_balances_bad_params(
    ledger: AnyLedger, staff_api: Any, params: dict[str, str]
) -> None:
    response = staff_api.get(url(ledger, "balances/"), params)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    if "ordering" in params:
        # An unknown field is refused, as the README says of bad filters, not silently ignored.
        assert "balance" in response.json()["error"]["details"]["ordering"][0]


@pytest.mark.parametrize("ordering", ["balance", "-updated_at", "-balance,updated_at"])
def test_staff_balances_ordering_the_schema_allows(
    ledger: AnyLedger, staff_api: Any, ordering: str
) -> None:
    response = staff_api.get(url(ledger, "balances/"), {"ordering": ordering})
    assert response.status_code == 200


def test_regular_user_cannot_list_balances(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    for path in ("balances/", f"balances/{other_user.pk}/", f"balances/{user.pk}/"):
        response = api.get(url(ledger, path))
        assert response.status_code == 403
        assert error_code(response) == "permission_denied"


def test_view_all_accounts_reads_balances(ledger: AnyLedger, user: Any) -> None:
    reader = holding(ledger, "view_all_accounts")
    response = token_client(reader).get(url(ledger, f"balances/{user.pk}/"))
    assert response.status_code == 200
    assert response.json()["balance"] == balance_get(ledger=ledger, user_id=user.pk)
    assert token_client(reader).get(url(ledger, "balances/")).status_code == 200


def test_posting_rights_or_staff_alone_do_not_read_balances(
    ledger: AnyLedger, service: Any, user: Any
) -> None:
    for caller in (service, make_user(staff=True), holding(ledger, "reverse_entry")):
        for path in (f"balances/{user.pk}/", "balances/"):
            response = token_client(caller).get(url(ledger, path))
            assert response.status_code == 403, (caller, path)
            assert error_code(response) == "permission_denied"


def test_unknown_user_balance_is_404(ledger: AnyLedger, staff_api: Any) -> None:
    response = staff_api.get(url(ledger, f"balances/{2**62}/"))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_ledgers_list(user: Any, api: Any) -> None:
    response = api.get("/api/ledgers/")
    assert response.status_code == 200
    body = response.json()
    assert [x["label"] for x in body] == registry.labels()
    for item in body:
        ledger = registry.get(item["label"])
        assert item["name"] == ledger.name
        assert [op["value"] for op in item["operations"]] == list(ledger.operations.values)
        ops = {op["value"]: op for op in item["operations"]}
        assert ops["DAILY_REWARD"] == {
            "value": "DAILY_REWARD",
            "label": "Daily reward",
            "direction": "credit",
            "posted_by": "user",
            "frequency": "daily",
            "fixed_amount": ledger.fixed_amount("DAILY_REWARD"),
            "expires_after": None if ledger.label != "alpha" else 7 * 24 * 3600,
        }
        assert ops["EXPIRY"]["posted_by"] == "system"
        assert ops["EXPIRY"]["direction"] == "debit"
        assert ops["SIGNUP_CREDIT"]["posted_by"] == "system"
        assert ops["SIGNUP_CREDIT"]["frequency"] == "once"
        assert ops["CREDIT_SPEND"]["direction"] == "debit"
        assert ops["CREDIT_SPEND"]["fixed_amount"] is None
        assert ops["CREDIT_ADD"]["posted_by"] == "staff"
        assert ops["REVERSAL"]["direction"] is None
        assert ops["REVERSAL"]["posted_by"] == "system"
    alpha = {op["value"]: op for op in body[0]["operations"]}
    assert alpha["DAILY_REWARD"]["fixed_amount"] == 10
    beta = {op["value"]: op for op in body[1]["operations"]}
    assert beta["DAILY_REWARD"]["fixed_amount"] == 5
    assert beta["REFERRAL_BONUS"]["expires_after"] == 90 * 24 * 3600
    assert alpha["SIGNUP_CREDIT"]["expires_after"] is None


@pytest.mark.parametrize(
    ("at", "status"),
    [
        ("0205-12-29T08:35:31+19:21", 200),  # an offset PostgreSQL itself would refuse
        ("2026-01-01T00:00:00-23:59", 200),
        ("0001-01-01T00:00:00+05:00", 400),  # before year 1 once in UTC
        ("9999-12-31T23:59:59-05:00", 400),  # after year 9999 once in UTC
        ("2026-01-01", 200),  # a date alone is midnight
    ],
)
def test_odd_but_valid_moments(ledger: AnyLedger, api: Any, at: str, status: int) -> None:
    response = api.get(url(ledger, "balance/"), {"at": at})
    assert response.status_code == status, response.content
    if status == 400:
        assert error_code(response) == "validation_error"

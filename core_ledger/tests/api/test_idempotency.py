"""The Idempotency-Key header: replay, reuse conflict, scope, and concurrent same-key posts."""

from __future__ import annotations

from typing import Any

import pytest

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get
from core_ledger.testing import make_user, race, set_balance
from core_ledger.tests.api.conftest import error_code, token_client, url

KEY = "order-7f3a-0001"


def _post(client: Any, ledger: AnyLedger, body: dict[str, Any], key: str | None = KEY) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url(ledger, "entries/"), body, format="json", headers=headers)


@pytest.mark.django_db
def test_same_key_same_request_replays(ledger: AnyLedger, staff_api: Any, user: Any) -> None:
    body = {"operation": "CREDIT_ADD", "amount": 70, "user": user.pk, "metadata": {"o": 1}}
    before = balance_get(ledger=ledger, user_id=user.pk)
    first = _post(staff_api, ledger, body)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert first.json()["idempotency_key"] == KEY
    count = ledger.entry_model.objects.count()

    again = _post(staff_api, ledger, body)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert ledger.entry_model.objects.count() == count
    assert balance_get(ledger=ledger, user_id=user.pk) == before + 70


@pytest.mark.django_db
def test_daily_reward_replay_is_not_already_claimed(ledger: AnyLedger, api: Any) -> None:
    first = _post(api, ledger, {"operation": "DAILY_REWARD"}, key="claim-today")
    again = _post(api, ledger, {"operation": "DAILY_REWARD"}, key="claim-today")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"amount": 71},
        {"operation": "CREDIT_SPEND"},
        {"description": "other"},
        {"metadata": {"o": 2}},
    ],
)
def test_same_key_different_request_is_422(
    ledger: AnyLedger, staff_api: Any, user: Any, change: dict[str, Any]
) -> None:
    set_balance(ledger=ledger, user=user, to=500)
    body = {"operation": "CREDIT_ADD", "amount": 70, "user": user.pk, "metadata": {"o": 1}}
    assert _post(staff_api, ledger, body).status_code == 201
    count = ledger.entry_model.objects.count()
    balance = balance_get(ledger=ledger, user_id=user.pk)

    response = _post(staff_api, ledger, body | change)
    assert response.status_code == 422
    assert error_code(response) == "idempotency_key_reused"
    assert response.json()["error"]["details"] == {}  # nothing of the original is revealed
    assert ledger.entry_model.objects.count() == count
    assert balance_get(ledger=ledger, user_id=user.pk) == balance


@pytest.mark.django_db
def test_key_replayed_by_another_caller_is_422(ledger: AnyLedger, staff: Any, user: Any) -> None:
    """The fingerprint includes the caller: another staff member cannot replay (or read) it."""
    body = {"operation": "CREDIT_ADD", "amount": 5, "user": user.pk}
    assert _post(token_client(staff), ledger, body).status_code == 201
    other_staff = make_user(staff=True, operator=True)
    response = _post(token_client(other_staff), ledger, body)
    assert response.status_code == 422
    assert error_code(response) == "idempotency_key_reused"


@pytest.mark.django_db
def test_key_is_scoped_per_account_and_ledger(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    """Two users may use the same key; the same user may use it in another ledger."""
    from core_ledger.ledger import registry

    a = _post(token_client(user), ledger, {"operation": "DAILY_REWARD"})
    b = _post(token_client(other_user), ledger, {"operation": "DAILY_REWARD"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert "Idempotent-Replayed" not in b.headers
    other = next(x for x in registry if x.label != ledger.label)
    c = _post(token_client(user), other, {"operation": "DAILY_REWARD"})
    assert c.status_code == 201 and "Idempotent-Replayed" not in c.headers


@pytest.mark.django_db
def test_refused_requests_are_not_stored(ledger: AnyLedger, user: Any, api: Any) -> None:
    """A key whose first use was refused is judged afresh on retry."""
    set_balance(ledger=ledger, user=user, to=3)
    refused = _post(api, ledger, {"operation": "CREDIT_SPEND", "amount": 5}, key="retry-me")
    assert refused.status_code == 409
    set_balance(ledger=ledger, user=user, to=10)
    retried = _post(api, ledger, {"operation": "CREDIT_SPEND", "amount": 5}, key="retry-me")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "é-key", "bell\x07"])
def test_bad_keys_are_400(ledger: AnyLedger, api: Any, key: str) -> None:
    count = ledger.entry_model.objects.count()
    response = api.post(
        url(ledger, "entries/"),
        {"operation": "DAILY_REWARD"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "idempotency_key" in response.json()["error"]["details"]
    assert ledger.entry_model.objects.count() == count


@pytest.mark.django_db
def test_longest_key_is_accepted(ledger: AnyLedger, api: Any) -> None:
    key = "k" * 255
    response = _post(api, ledger, {"operation": "DAILY_REWARD"}, key=key)
    assert response.status_code == 201
    assert response.json()["idempotency_key"] == key


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("poster", ["user", "staff"])
def test_concurrent_same_key_posts_write_once(ledger: AnyLedger, poster: str) -> None:
    """N real connections post one key at once: one entry, the others replay it."""
    owner = make_user()
    set_balance(ledger=ledger, user=owner, to=1000)
    caller = owner if poster == "user" else make_user(staff=True, operator=True)
    body: dict[str, Any] = {"operation": "CREDIT_SPEND", "amount": 7, "user": owner.pk}
    threads_n = 8
    clients = [token_client(caller) for _ in range(threads_n)]  # tokens made before the race
    results = race(threads_n, lambda i: _post(clients[i], ledger, body, key="race-key"))
    assert not [r for r in results if isinstance(r, Exception)]
    assert [r.status_code for r in results] == [201] * threads_n, [r.content for r in results]
    ids = {r.json()["id"] for r in results}
    assert len(ids) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in results]
    assert replayed.count("true") == threads_n - 1
    assert ledger.entry_model.objects.filter(user=owner, idempotency_key="race-key").count() == 1
    assert balance_get(ledger=ledger, user_id=owner.pk) == 993

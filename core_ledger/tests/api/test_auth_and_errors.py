"""Authentication (token, session), throttling and the error shape of every refusal."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.ledger import AnyLedger
from core_ledger.models import ApiToken
from core_ledger.selectors import balance_get
from core_ledger.services.tokens import token_digest
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import PASSWORD, error_code, session_client, token_client, url


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/ledgers/"),
        ("get", "/api/balances/"),
        ("get", "balance/"),
        ("get", "balances/"),
        ("get", "entries/"),
        ("get", "entries/1/"),
        ("post", "entries/"),
        ("post", "entries/1/reverse/"),
    ],
)
def test_anonymous_is_401_with_www_authenticate(
    ledger: AnyLedger, anon: APIClient, method: str, path: str
) -> None:
    count = ledger.entry_model.objects.count()
    target = path if path.startswith("/") else url(ledger, path)
    response = getattr(anon, method)(
        target, {"operation": "CREDIT_ADD", "amount": 5}, format="json"
    )
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"
    assert ledger.entry_model.objects.count() == count


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Token nope", "Token ", "Bearer abc", "Token a b"])
def test_bad_token_is_401(ledger: AnyLedger, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(url(ledger, "balance/"))
    # "Bearer" is not our scheme: the request is simply anonymous, which is 401 as well.
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"


@pytest.mark.django_db
def test_token_endpoint(ledger: AnyLedger, user: Any) -> None:
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert ApiToken.objects.get(user=user).digest == token_digest(token)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get(url(ledger, "balance/"))
    assert me.status_code == 200 and me.json()["user"] == user.pk

    wrong = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": "wrong"}, format="json"
    )
    assert wrong.status_code == 400
    assert error_code(wrong) == "validation_error"
    assert "token" not in wrong.json()
    for body in ({}, {"username": user.username}, {"username": ["x"], "password": 5}):
        bad = APIClient().post("/api/auth/token/", body, format="json")
        assert bad.status_code == 400
        assert error_code(bad) == "validation_error"


@pytest.mark.django_db
def test_inactive_user_gets_no_token_and_token_stops_working(ledger: AnyLedger, user: Any) -> None:
    client = token_client(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert client.get(url(ledger, "balance/")).status_code == 401
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 400


@pytest.mark.django_db
def test_session_auth_posts_with_csrf(ledger: AnyLedger, user: Any) -> None:
    client = session_client(user)
    count = ledger.entry_model.objects.count()
    no_csrf = client.post(url(ledger, "entries/"), {"operation": "DAILY_REWARD"}, format="json")
    assert no_csrf.status_code == 403
    assert error_code(no_csrf) == "permission_denied"
    assert ledger.entry_model.objects.count() == count

    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    response = client.post(
        url(ledger, "entries/"),
        {"operation": "DAILY_REWARD"},
        format="json",
        headers={"X-CSRFToken": secret},
    )
    assert response.status_code == 201, response.content
    assert response.json()["user"] == user.pk


@pytest.mark.django_db
def test_method_not_allowed_is_405(ledger: AnyLedger, api: APIClient, staff_api: APIClient) -> None:
    for client, method, path in [
        (api, "delete", "entries/1/"),
        (api, "put", "entries/1/"),
        (api, "patch", "entries/1/"),
        (api, "post", "balance/"),
        (staff_api, "delete", "balances/1/"),
    ]:
        response = getattr(client, method)(url(ledger, path), {}, format="json")
        assert response.status_code == 405, (method, path)
        assert error_code(response) == "method_not_allowed"


@pytest.mark.django_db
def test_unknown_api_path_is_json_404(api: APIClient) -> None:
    for path in ("/api/nope/", "/api/gamma/entries/", "/api/alpha/entries/1/undo/"):
        response = api.get(path)
        assert response.status_code == 404
        assert error_code(response) == "not_found"


@pytest.mark.django_db
def test_throttled_is_429(ledger: AnyLedger, user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates into the class at import time; patch them there.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "2/min"})
    client = token_client(user)
    statuses = [client.get(url(ledger, "balance/")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get(url(ledger, "balance/"))
    assert error_code(response) == "throttled"
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["details"]["retry_after"] > 0
    # Anonymous callers have their own, lower rate (the token endpoint is throttled too).
    anon = APIClient()
    anon_statuses = [
        anon.post("/api/auth/token/", {"username": "x", "password": "y"}, format="json").status_code
        for _ in range(3)
    ]
    assert anon_statuses == [400, 400, 429]
    # The health check is never throttled.
    assert all(anon.get("/healthz").status_code == 200 for _ in range(5))


@pytest.mark.django_db(transaction=True)
def test_locked_balance_row_is_503_ledger_busy(ledger: AnyLedger) -> None:
    """A writer holding the balance row longer than lock_timeout: 503, nothing written."""
    from django.db import connections

    user = make_user()
    set_balance(ledger=ledger, user=user, to=20)
    client = token_client(user)
    locked = threading.Event()
    release = threading.Event()
    table = connection.ops.quote_name(ledger.balance_model._meta.db_table)

    def holder() -> None:
        conn = connections.create_connection("default")
        try:
            conn.connect()
            conn.set_autocommit(False)
            with conn.cursor() as cursor:
                cursor.execute(f"SELECT 1 FROM {table} WHERE user_id = %s FOR UPDATE", [user.pk])
                locked.set()
                release.wait(timeout=30)
            conn.rollback()
        finally:
            conn.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        count = ledger.entry_model.objects.count()
        # The request's own lock timeout (DB_LOCK_TIMEOUT_MS), shortened for the test.
        with override_settings(SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS=200):
            response = client.post(
                url(ledger, "entries/"), {"operation": "CREDIT_SPEND", "amount": 5}, format="json"
            )
        assert response.status_code == 503
        assert error_code(response) == "ledger_busy"
        assert ledger.entry_model.objects.count() == count
    finally:
        release.set()
        thread.join(timeout=30)
        connection.close()  # drop the session's request timeouts
    assert balance_get(ledger=ledger, user_id=user.pk) == 20


@pytest.mark.django_db(transaction=True)
def test_database_down_is_503_not_500(ledger: AnyLedger) -> None:
    """The database unreachable mid-request: 503 database_unavailable from the API, 503 healthz."""
    user = make_user()
    client = token_client(user)
    anon = APIClient()
    assert anon.get("/healthz").json() == {"status": "ok"}
    connection.close()
    saved = dict(connection.settings_dict)
    connection.settings_dict["HOST"] = "/nonexistent-socket-dir"
    connection.settings_dict["PORT"] = "1"
    try:
        response = client.get(url(ledger, "balance/"))
        assert response.status_code == 503
        assert error_code(response) == "database_unavailable"
        health = anon.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "database_unavailable"}
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert anon.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_browsable_api_pages_render_for_a_session_user(ledger: AnyLedger, staff: Any) -> None:
    client = session_client(staff)
    entry = ledger.entry_model.objects.filter(user=staff).first()
    assert entry is not None
    for path in ("entries/", f"entries/{entry.pk}/", "balance/", "balances/"):
        response = client.get(url(ledger, path), HTTP_ACCEPT="text/html")
        assert response.status_code == 200, path
        assert b"<html" in response.content.lower()

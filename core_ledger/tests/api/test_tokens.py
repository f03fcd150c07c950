"""API tokens: issued with an expiry, stored as digests, revoked by logout, logout-all and the
admin; an expired or revoked token is 401 ``not_authenticated`` in the error shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from core_ledger.models import ApiToken
from core_ledger.services.tokens import token_digest
from core_ledger.testing import make_user
from core_ledger.tests.api.conftest import PASSWORD, error_code

pytestmark = pytest.mark.django_db


def login(user: Any, **extra: Any) -> dict[str, Any]:
    response = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": PASSWORD, **extra}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "expiry"}
    return dict(body)


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def assert_refused(response: Any) -> None:
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"


def test_token_has_an_expiry_from_the_ttl_setting() -> None:
    user = make_user()
    with override_settings(SHARED_LEDGER_TOKEN_TTL=120):
        before = timezone.now()
        body = login(user)
    expiry = parse_datetime(body["expiry"])
    assert expiry is not None
    assert before + timedelta(seconds=119) <= expiry <= timezone.now() + timedelta(seconds=121)
    assert client_with(body["token"]).get("/api/balances/").status_code == 200


def test_default_lifetime_is_ten_hours() -> None:
    from core_ledger.conf import app_settings

    with override_settings():
        del settings.SHARED_LEDGER_TOKEN_TTL
        assert timedelta(hours=10) == app_settings.TOKEN_TTL


def test_the_database_holds_only_a_digest() -> None:
    user = make_user()
    token = login(user)["token"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM core_ledger_api_token")
        rows = cursor.fetchall()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert token not in stored
    assert token_digest(token) in stored


def test_each_login_issues_a_new_token() -> None:
    user = make_user()
    first, second = login(user)["token"], login(user)["token"]
    assert first != second
    assert ApiToken.objects.filter(user=user).count() == 2


def test_expired_token_is_401() -> None:
    user = make_user()
    token = login(user)["token"]
    ApiToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    assert_refused(client_with(token).get("/api/balances/"))


def test_logout_revokes_the_token_in_use_only() -> None:
    user = make_user()
    kept, revoked = login(user)["token"], login(user)["token"]
    response = client_with(revoked).post("/api/auth/logout/")
    assert response.status_code == 204
    assert_refused(client_with(revoked).get("/api/balances/"))
    assert_refused(client_with(revoked).post("/api/auth/logout/"))
    assert client_with(kept).get("/api/balances/").status_code == 200


def test_logout_all_revokes_every_token_of_the_caller_only() -> None:
    user, other = make_user(), make_user()
    tokens = [login(user)["token"] for _ in range(3)]
    others = login(other)["token"]
    assert client_with(tokens[0]).post("/api/auth/logout-all/").status_code == 204
    for token in tokens:
        assert_refused(client_with(token).get("/api/balances/"))
    assert client_with(others).get("/api/balances/").status_code == 200
    assert not ApiToken.objects.filter(user=user).exists()


def test_logout_needs_authentication() -> None:
    for path in ("/api/auth/logout/", "/api/auth/logout-all/"):
        assert_refused(APIClient().post(path))


def test_inactive_user_token_is_401() -> None:
    user = make_user()
    token = login(user)["token"]
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert_refused(client_with(token).get("/api/balances/"))


def test_token_authentication_comes_before_session_authentication() -> None:
    classes = settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    assert classes.index("core_ledger.api.authentication.ExpiringTokenAuthentication") < (
        classes.index("rest_framework.authentication.SessionAuthentication")
    )


def test_admin_lists_and_revokes_tokens() -> None:
    user = make_user()
    token = login(user)["token"]
    record = ApiToken.objects.get(user=user)
    admin = make_user(staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/admin/core_ledger/apitoken/")
    assert page.status_code == 200
    html = page.content.decode()
    assert record.digest[:8] in html and user.username in html
    assert record.digest not in html and token not in html
    assert browser.get("/admin/core_ledger/apitoken/add/").status_code == 403
    response = browser.post(
        "/admin/core_ledger/apitoken/",
        {"action": "revoke", "_selected_action": [record.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert not ApiToken.objects.filter(pk=record.pk).exists()
    assert_refused(client_with(token).get("/api/balances/"))


def test_username_field_value_under_either_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose user model logs in by another field (here ``email``): its value is sent as
    ``username`` or under the field's own name."""
    from django.contrib.auth import get_user_model

    user = make_user()
    monkeypatch.setattr(get_user_model(), "USERNAME_FIELD", "email")
    for key in ("username", "email"):
        response = APIClient().post("/api/auth/token/", {key: user.email, "password": PASSWORD})
        assert response.status_code == 200, (key, response.content)
    wrong = APIClient().post("/api/auth/token/", {"email": user.username, "password": PASSWORD})
    assert wrong.status_code == 400
    assert error_code(wrong) == "validation_error"

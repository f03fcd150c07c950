"""Fixtures for the API tests: clients that authenticate for real (token or session)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.test import APIClient

from core_ledger.ledger import AnyLedger
from core_ledger.testing import api_token, make_user

PASSWORD = "pw-for-tests"


@pytest.fixture(autouse=True)
def _fresh_throttle_history() -> Iterator[None]:
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


def token_client(user: Any) -> APIClient:
    """A client that sends ``Authorization: Token <key>`` like an API consumer."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def session_client(user: Any) -> APIClient:
    """A client signed in with a session cookie, like the browsable API or an admin user."""
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def client_for() -> Callable[[Any], APIClient]:
    return token_client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def api(user: Any) -> APIClient:
    """The regular user's token client."""
    return token_client(user)


@pytest.fixture
def staff_api(staff: Any) -> APIClient:
    return token_client(staff)


def holding(ledger: AnyLedger, *codenames: str, staff: bool = False) -> Any:
    """A new account holding exactly these permissions of ``ledger`` (e.g. "reverse_entry")."""
    account = make_user(staff=staff)
    for codename in codenames:
        account.user_permissions.add(
            Permission.objects.get(content_type__app_label=ledger.app_label, codename=codename)
        )
    return type(account).objects.get(pk=account.pk)  # fresh: no stale permission cache


@pytest.fixture
def service(ledger: AnyLedger) -> Any:
    """A non-staff service account holding the ledger's ``post_any_entry`` permission only."""
    return holding(ledger, "post_any_entry")


def url(ledger: AnyLedger, suffix: str) -> str:
    """``/api/<label>/<suffix>``."""
    return f"/api/{ledger.label}/{suffix}"


def error_code(response: Any) -> str:
    """The stable code of an error response (asserting the one error shape on the way)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["details"], dict)
    assert body["error"]["message"]
    return str(body["error"]["code"])

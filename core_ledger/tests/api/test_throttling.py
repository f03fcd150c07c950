"""The token endpoint's own throttles, the shared-cache check, and CACHE_URL parsing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.checks import check_shared_cache
from core_ledger.tests.api.conftest import error_code

LOGIN_RATES = {"user": "1000/min", "anon": "1000/min", "login": "2/min"}


@pytest.mark.django_db
def test_one_username_is_limited_from_any_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", LOGIN_RATES)
    statuses = []
    response: Any = None
    for i, name in enumerate(["victim", "Victim", "VICTIM", "victim"]):
        client = APIClient(REMOTE_ADDR=f"192.0.2.{i + 1}")
        response = client.post(
            "/api/auth/token/", {"username": name, "password": "guess"}, format="json"
        )
        statuses.append(response.status_code)
    assert statuses == [400, 400, 429, 429]
    assert error_code(response) == "throttled"
    # Another username from a fresh address is not held back by the victim's counter.
    other = APIClient(REMOTE_ADDR="192.0.2.99")
    assert (
        other.post(
            "/api/auth/token/", {"username": "someone", "password": "guess"}, format="json"
        ).status_code
        == 400
    )


@pytest.mark.django_db
def test_one_address_is_limited_whatever_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", LOGIN_RATES)
    client = APIClient(REMOTE_ADDR="192.0.2.7")
    statuses = [
        client.post(
            "/api/auth/token/",
            {"username": f"name-{i}", "password": "guess"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
        ).status_code
        for i in range(4)
    ]
    assert statuses == [400, 400, 429, 429]


def test_forwarded_for_is_not_trusted_by_default() -> None:
    from django.conf import settings

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


@pytest.mark.parametrize(
    ("debug", "backend", "warned"),
    [
        (False, "django.core.cache.backends.locmem.LocMemCache", True),
        (False, "django.core.cache.backends.dummy.DummyCache", True),
        (False, "django.core.cache.backends.redis.RedisCache", False),
        (True, "django.core.cache.backends.locmem.LocMemCache", False),
    ],
)
def test_process_local_cache_with_debug_off_warns(debug: bool, backend: str, warned: bool) -> None:
    with override_settings(DEBUG=debug, CACHES={"default": {"BACKEND": backend}}):
        ids = [message.id for message in check_shared_cache()]
    assert ids == (["core_ledger.W001"] if warned else [])


def test_cache_url_gives_djangos_redis_cache() -> None:
    from ledger_project.settings import _cache_config  # pyright: ignore[reportPrivateUsage]

    config = _cache_config("redis://127.0.0.1:6379/5?key_prefix=sl&timeout=60")
    assert config["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert config["LOCATION"] == "redis://127.0.0.1:6379/5"
    assert config["KEY_PREFIX"] == "sl" and config["TIMEOUT"] == 60
    assert str(_cache_config("locmemcache://")["BACKEND"]).endswith("LocMemCache")

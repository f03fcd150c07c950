"""Throttles a client cannot dodge: counters shared by every gunicorn worker (Redis from
``CACHE_URL``), and client addresses that a rotating ``X-Forwarded-For`` does not change."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import pytest
import redis
from django.db import connection

from core_ledger.testing import api_token
from core_ledger.tests.reliability.helpers import GunicornServer, fast_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture
def cache_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared Redis; its keys are removed at the end."""
    prefix = f"sl-test-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _server(prefix: str, **rates: str) -> GunicornServer:
    return GunicornServer(
        connection.settings_dict["NAME"],
        workers=3,
        extra_env={"CACHE_URL": f"{REDIS_URL}?key_prefix={prefix}", **rates},
    )


def test_user_limit_holds_across_workers(cache_prefix: str) -> None:
    limit, extra = 5, 7
    user = fast_user()
    token = api_token(user)
    with _server(cache_prefix, API_THROTTLE_USER=f"{limit}/min") as server:

        def get(_: int) -> int:
            # A new connection per request: gunicorn's workers take turns accepting them.
            return httpx.get(
                f"{server.base_url}/api/alpha/balance/",
                headers={"Authorization": f"Token {token}"},
                timeout=20,
            ).status_code

        # Concurrent, so workers race on the counter: a read-modify-write count lets extra through.
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(get, range(limit + extra)))
    assert sorted(statuses) == [200] * limit + [429] * extra, statuses
    # The counters are in the shared Redis, not in any one worker.
    stored = redis.Redis.from_url(REDIS_URL).keys(f"{cache_prefix}:*throttle_user_*")
    assert stored, "no throttle counter in Redis"


def test_rotating_forwarded_for_escapes_neither_login_nor_anonymous_limit(
    cache_prefix: str,
) -> None:
    login, anon, extra = 2, 10, 3
    with _server(
        cache_prefix, API_THROTTLE_LOGIN=f"{login}/min", API_THROTTLE_ANON=f"{anon}/min"
    ) as server:
        # The token endpoint: a new address and a new username on every attempt.
        logins = [
            httpx.post(
                f"{server.base_url}/api/auth/token/",
                json={"username": f"guess-{i}", "password": "wrong"},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                timeout=20,
            )
            for i in range(login + extra)
        ]
        assert [r.status_code for r in logins] == [400] * login + [429] * extra
        assert logins[-1].json()["error"]["code"] == "throttled"
        # Any anonymous endpoint: the token requests above counted too (anonymous, one address).
        docs = [
            httpx.get(
                f"{server.base_url}/api/docs/",
                headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                timeout=20,
            ).status_code
            for i in range(anon - (login + extra) + extra)
        ]
        assert docs == [200] * (anon - (login + extra)) + [429] * extra


@pytest.mark.parametrize("racers", [20])
def test_racing_requests_never_pass_more_than_the_limit(cache_prefix: str, racers: int) -> None:
    """Requests released together against the shared Redis: exactly the limit passes (DRF's
    read-modify-write history lets several racers through on the same empty history)."""
    from django.core.cache.backends.redis import RedisCache

    from core_ledger.api.throttling import AtomicRateThrottle

    class Racer(AtomicRateThrottle):
        rate = "5/min"
        cache = RedisCache(REDIS_URL, {"KEY_PREFIX": cache_prefix})

        def get_cache_key(self, request: Any, view: Any) -> str:
            return "throttle_racer"

    barrier = threading.Barrier(racers)

    def one(_: int) -> bool:
        throttle = Racer()
        barrier.wait(timeout=20)
        return throttle.allow_request(cast(Any, None), None)

    with ThreadPoolExecutor(racers) as pool:
        allowed = list(pool.map(one, range(racers)))
    assert allowed.count(True) == 5

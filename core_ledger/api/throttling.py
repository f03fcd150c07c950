"""Throttles that hold under concurrency, and the token endpoint's own ones.

DRF's throttles read a request history from the cache, append and write it back: two workers
that race read the same history, and both requests pass. :class:`AtomicRateThrottle` counts
with the cache's atomic ``add`` and ``incr`` instead (``INCR`` in Redis), so N + k concurrent
requests from one client give exactly k refusals whichever workers serve them. The window
starts at the client's first request and lasts the rate's period.

The token endpoint is throttled per client address and per username.

Both use the ``login`` rate (``DEFAULT_THROTTLE_RATES["login"]``, ``API_THROTTLE_LOGIN`` in this
project; ``login_username`` may set the per-username rate apart). The address is DRF's
``get_ident``, which trusts ``X-Forwarded-For`` only as far as ``NUM_PROXIES`` says, so rotating
that header does not give a client fresh counters. The per-username counter holds however many
addresses guess one account's password. Counters live in the default cache: production needs one
that every worker shares (see the check ``core_ledger.W001``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework import throttling
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

DEFAULT_LOGIN_RATE = "10/min"


class AtomicRateThrottle(SimpleRateThrottle):
    """A fixed window per client, counted atomically in the cache (see the module docstring)."""

    # Set by SimpleRateThrottle.__init__ from the rate (the stubs leave them out).
    num_requests: int
    duration: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.key = key
        self.now = self.timer()
        self.cache.add(key, 0, self.duration)
        try:
            count = self.cache.incr(key)
        except ValueError:  # the window ended between add and incr: this request opens one
            self.cache.add(key, 1, self.duration)
            count = 1
        if count == 1:
            self.cache.set(f"{key}:start", self.now, self.duration)
        return count <= self.num_requests

    def wait(self) -> float | None:
        start = self.cache.get(f"{self.key}:start")
        if start is None:
            return float(self.duration)
        return max(0.0, self.duration - (self.now - float(start)))


class UserRateThrottle(AtomicRateThrottle, throttling.UserRateThrottle):
    """DRF's per-user throttle (``user`` rate), counted atomically."""


class AnonRateThrottle(AtomicRateThrottle, throttling.AnonRateThrottle):
    """DRF's per-address throttle for anonymous requests (``anon`` rate), counted atomically."""


class _LoginThrottle(AtomicRateThrottle):
    def get_rate(self) -> str | None:
        rates = self.THROTTLE_RATES
        return rates.get(self.scope or "login") or rates.get("login") or DEFAULT_LOGIN_RATE


class LoginAddressThrottle(_LoginThrottle):
    """Token requests per client address (every request, whoever it names)."""

    scope = "login"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def login_username(request: Request) -> str | None:
    """The username a token request names: ``username``, else the user model's USERNAME_FIELD."""
    data = request.data
    if not hasattr(data, "get"):
        return None
    value = data.get("username")
    if value is None:
        from core_ledger.selectors import username_field

        value = data.get(username_field())
    return value if isinstance(value, str) and value else None


class LoginUsernameThrottle(_LoginThrottle):
    """Token requests per username named, from any address (case-insensitive)."""

    scope = "login_username"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        username = login_username(request)
        if username is None:
            return None  # the serializer refuses the request; the address throttle counted it
        digest = hashlib.sha256(username.casefold().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}

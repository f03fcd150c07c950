"""Signing webhook deliveries, and verifying them in a receiver written in Python.

Each delivery is a POST of the event's JSON with two headers::

    Ledger-Event-Id: 4211
    Ledger-Signature: t=1764680000,v1=5f0c…(hex)

``v1`` is the hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the endpoint's secret. A
receiver checks it over the raw bytes it received (before parsing the JSON), refuses a ``t`` too
far from its clock (a replayed old delivery), and drops events whose id it has seen (delivery is
at least once)::

    from core_ledger.webhooks import verify

    if not verify(SECRET, request.headers, request.body):
        return 400

This module only needs the standard library, so a receiver can copy it as is.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

EVENT_ID_HEADER = "Ledger-Event-Id"
SIGNATURE_HEADER = "Ledger-Signature"
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Ledger-Signature`` header value for ``body``: ``t=<unix seconds>,v1=<hex>``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={signature(secret, t, body)}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``body`` was signed with ``secret`` less than ``tolerance`` seconds ago.

    ``headers`` is any mapping of the request's headers (names in any case); ``body`` the raw
    bytes received. Several ``v1=`` values (a secret being rotated) are each tried.
    """
    value = _header(headers, SIGNATURE_HEADER)
    if not value:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit():
            timestamp = int(item)
        elif key == "v1" and item:
            candidates.append(item)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)

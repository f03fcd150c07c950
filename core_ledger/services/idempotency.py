"""Idempotency keys: the request fingerprint, and replaying or refusing a key used before.

A key is unique per (ledger, account holder) and lives on the entry row, so it is kept as long as
the entry. The fingerprint covers everything that makes two requests the same request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Generic

from core_ledger.exceptions import IdempotencyKeyReused
from core_ledger.ledger import EntryT, Ledger


@dataclass(frozen=True)
class PostResult(Generic[EntryT]):
    """The entry a post produced, and whether it is the replay of an earlier post."""

    entry: EntryT
    replayed: bool = False


def fingerprint(**parts: Any) -> str:
    """A stable hash of the request's parts (caller, operation, amount, target, text, metadata)."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def find_by_key(ledger: Ledger[EntryT, Any, Any], *, user_id: int, key: str) -> EntryT | None:
    """The entry posted with ``key`` for ``user_id``, if any."""
    return ledger.entry_model.objects.filter(user_id=user_id, idempotency_key=key).first()


def replay(entry: EntryT, request_fingerprint: str) -> PostResult[EntryT]:
    """The earlier entry as a replay, or ``idempotency_key_reused`` if the request differs."""
    if entry.request_fingerprint != request_fingerprint:
        # Say nothing of the original request: the key may be another caller's.
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    return PostResult(entry=entry, replayed=True)

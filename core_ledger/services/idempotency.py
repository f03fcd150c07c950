"""Idempotency keys: the request fingerprint, and replaying or refusing a key used before.

A key is unique per (ledger, account holder) and lives on the entry row, so it is kept as long as
the entry. The fingerprint covers everything that makes two requests the same request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic

from core_ledger.exceptions import IdempotencyKeyReused
from core_ledger.ledger import EntryT, Ledger


@dataclass(frozen=True)
class PostResult(Generic[EntryT]):
    """The entry a post produced, and whether it is the replay of an earlier post."""

    entry: EntryT
    replayed: bool = False


def fingerprint_prefix(
    *,
    actor_id: int | None,
    operation: str,
    amount: int | None,
    description: str,
    metadata: Mapping[str, Any],
    expires_at: datetime | None = None,
) -> str:
    """The request as canonical JSON, up to the target user's id (see :func:`fingerprint`).

    The parts are what the caller sent: ``amount`` is the client's (None for a fixed-amount
    operation, whose amount comes from settings: a retry after a settings change is the same
    request). ``user`` sorts last, so a bulk grant completes the text per user in SQL.
    """
    parts = {
        "actor": actor_id,
        "amount": amount,
        "description": description,
        "expires_at": None if expires_at is None else expires_at.isoformat(),
        "metadata": dict(metadata),
        "operation": operation,
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)[:-1] + ',"user":'


def fingerprint(
    *,
    actor_id: int | None,
    operation: str,
    amount: int | None,
    user_id: int,
    description: str,
    metadata: Mapping[str, Any],
    expires_at: datetime | None = None,
) -> str:
    """The one request fingerprint of every write path (posts, bulk grants): a SHA-256 of the
    caller, the operation, the client's amount, the target user, the description and metadata.

    ``SQL_FINGERPRINT`` computes the same digest in PostgreSQL from :func:`fingerprint_prefix`.
    """
    prefix = fingerprint_prefix(
        actor_id=actor_id,
        operation=operation,
        amount=amount,
        description=description,
        metadata=metadata,
        expires_at=expires_at,
    )
    return hashlib.sha256(f"{prefix}{int(user_id)}}}".encode()).hexdigest()


def sql_fingerprint(user_id_sql: str) -> str:
    """SQL for :func:`fingerprint` of the user in ``user_id_sql``; one ``%s`` takes the prefix."""
    return f"encode(sha256(convert_to(%s || ({user_id_sql})::text || '}}', 'UTF8')), 'hex')"


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

"""API tokens: issue, revoke one, revoke every token of a user.

A token is 256 random bits handed to the client once; the database keeps only its SHA-256
digest (:class:`core_ledger.models.ApiToken`). Tokens expire after ``SHARED_LEDGER_TOKEN_TTL``
(``API_TOKEN_TTL`` in this project) and a revoked token is deleted.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core_ledger.conf import app_settings
from core_ledger.models import ApiToken


def token_digest(token: str) -> str:
    """The stored form of ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    """A new token as the client receives it (``token`` is never stored) and its row."""

    token: str
    expiry: datetime
    record: ApiToken


@transaction.atomic
def token_create(*, user_id: int) -> IssuedToken:
    """Issue a new token for ``user_id``, valid for ``SHARED_LEDGER_TOKEN_TTL``.

    The user's expired tokens are deleted on the way, so the table holds live tokens only.
    """
    now = timezone.now()
    ApiToken.objects.filter(user_id=user_id, expiry__lte=now).delete()
    token = secrets.token_urlsafe(32)
    record = ApiToken.objects.create(
        user_id=user_id,
        digest=token_digest(token),
        created=now,
        expiry=now + app_settings.TOKEN_TTL,
    )
    return IssuedToken(token=token, expiry=record.expiry, record=record)


def token_revoke(*, token_id: int) -> int:
    """Revoke one token (by row id); returns how many were revoked (0 if already gone)."""
    deleted, _ = ApiToken.objects.filter(pk=token_id).delete()
    return deleted


def token_revoke_all(*, user_id: int) -> int:
    """Revoke every token of ``user_id``; returns how many were revoked."""
    deleted, _ = ApiToken.objects.filter(user_id=user_id).delete()
    return deleted


def tokens_revoke(*, token_ids: list[int]) -> int:
    """Revoke the tokens with these row ids (the admin's action); returns how many."""
    deleted, _ = ApiToken.objects.filter(pk__in=token_ids).delete()
    return deleted

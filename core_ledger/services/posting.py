"""Posting one entry under its operation's rule, and the signup credits of a new user."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from core_ledger.exceptions import (
    AlreadyClaimed,
    InsufficientCredits,
    OperationNotAllowed,
    ValidationFailed,
)
from core_ledger.ledger import AnyLedger, EntryT, Ledger, OpT, registry
from core_ledger.models import DESCRIPTION_MAX_LENGTH, AbstractLedgerEntry
from core_ledger.operations import SharedOperation
from core_ledger.services import idempotency, sql
from core_ledger.services.idempotency import PostResult
from core_ledger.services.policy import Actor, actor_id, authorize, is_privileged
from core_ledger.services.validation import (
    clean_expires_at,
    clean_key,
    clean_metadata,
    clean_text,
    signed_amount,
)


def entry_post(
    *,
    ledger: Ledger[EntryT, Any, OpT],
    user_id: int,
    operation: OpT,
    amount: int | None = None,
    actor: Actor = None,
    idempotency_key: str | None = None,
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> PostResult[EntryT]:
    """Post one entry under the operation's rule; replay it if the idempotency key was used.

    ``operation`` is a member of the ledger's operations class (parse outside strings once with
    ``ledger.operation(text)``). ``amount`` is positive (the operation gives the sign) and must be
    omitted for fixed-amount operations. ``expires_at`` makes a credit a lot that lapses then
    (default: the operation's lifetime). ``actor`` is the caller (None: the system). Raises a
    :class:`~core_ledger.exceptions.LedgerError`; writes nothing when it does.
    """
    op = ledger.operation(operation)  # a member, even if a caller passed the plain value
    if op in (SharedOperation.REVERSAL, SharedOperation.EXPIRY):
        raise OperationNotAllowed(f"{op.value} entries are written by the ledger itself.")
    rule = ledger.rule(op)
    authorize(ledger=ledger, rule=rule, operation=op, actor=actor, user_id=user_id)
    signed = signed_amount(ledger, op, rule, amount)
    description = clean_text(
        description or "", name="description", max_length=DESCRIPTION_MAX_LENGTH
    )
    clean_meta = clean_metadata(metadata)
    key = clean_key(idempotency_key)
    created_by = actor_id(actor)
    fingerprint = ""
    if key is not None:
        fingerprint = idempotency.fingerprint(
            actor_id=created_by,
            operation=op.value,
            amount=amount,
            user_id=user_id,
            description=description,
            metadata=clean_meta,
            expires_at=expires_at,
        )
        existing = idempotency.find_by_key(ledger, user_id=user_id, key=key)
        if existing is not None:
            return idempotency.replay(existing, fingerprint)
    # After the replay check: retrying a post whose expires_at has passed since replays it.
    lapse = clean_expires_at(
        ledger,
        op,
        rule,
        expires_at,
        privileged=actor is None or is_privileged(ledger, actor),
        now=timezone.now(),
    )
    try:
        entry = sql.write(
            ledger=ledger,
            user_id=user_id,
            operation=op.value,
            amount=signed,
            actor_id=created_by,
            idempotency_key=key,
            fingerprint=fingerprint,
            description=description,
            metadata=clean_meta,
            expires_at=lapse,
        )
    except (DatabaseError, InsufficientCredits) as exc:
        # A concurrent request with the same key may have won the race (its entry took the key:
        # a unique violation, or the credits: a refusal): replay it. A lost connection or a
        # timeout is no such race, and the connection may be gone: nothing to look up.
        if key is not None and isinstance(exc, (IntegrityError, InsufficientCredits)):
            existing = idempotency.find_by_key(ledger, user_id=user_id, key=key)
            if existing is not None:
                return idempotency.replay(existing, fingerprint)
        if isinstance(exc, InsufficientCredits):
            from core_ledger.selectors import balance_get, user_exists

            if exc.details.get("balance") is None:  # else the statement read it (a user's row)
                exc.details["balance"] = balance_get(ledger=ledger, user_id=user_id)
                if exc.details["balance"] == 0 and not user_exists(ledger=ledger, user_id=user_id):
                    raise ValidationFailed("No such user.", user=["No such user."]) from None
            raise
        raise sql.translate_db_error(exc, operation=op.value) from exc
    return PostResult(entry=entry)


def signup_credits_grant(*, user_id: int) -> list[AbstractLedgerEntry]:
    """Give a new user the signup credit of every ledger that offers one (once per ledger)."""
    granted: list[AbstractLedgerEntry] = []
    ledger: AnyLedger
    for ledger in registry:
        if not ledger.fixed_amount(SharedOperation.SIGNUP_CREDIT):
            continue
        try:
            result = entry_post(
                ledger=ledger,
                user_id=user_id,
                operation=ledger.shared(SharedOperation.SIGNUP_CREDIT),
            )
        except AlreadyClaimed:
            continue
        granted.append(result.entry)
    return granted

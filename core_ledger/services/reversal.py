"""Reversal: undo an entry with an opposite ``REVERSAL`` entry that points at it, once."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError

from core_ledger.exceptions import (
    AlreadyReversed,
    CannotReverseExpiry,
    EntryNotFound,
    InsufficientCredits,
    OperationNotAllowed,
    ReversalNotReversible,
    ValidationFailed,
)
from core_ledger.ledger import EntryT, Ledger
from core_ledger.models import DESCRIPTION_MAX_LENGTH
from core_ledger.operations import SharedOperation
from core_ledger.services import sql
from core_ledger.services.lots import Move
from core_ledger.services.policy import Actor, actor_id, can_reverse
from core_ledger.services.validation import clean_text


def entry_reverse(
    *, ledger: Ledger[EntryT, Any, Any], entry_id: int, reason: str, actor: Actor = None
) -> EntryT:
    """Undo an entry with an opposite REVERSAL entry that points at it; once per entry.

    Refused with ``insufficient_credits`` when reversing a credit would take the balance below 0.
    With expiring credits: reversing a debit gives the credits back to the lots they came from
    (credits of a lot that has expired meanwhile expire again at once); reversing an expiring
    credit takes back its lot, which must still be whole (else ``credits_already_used``); an
    EXPIRY entry cannot be reversed (``cannot_reverse_expiry``).
    """
    if actor is not None and not can_reverse(ledger, actor):
        raise OperationNotAllowed(
            "You may not reverse entries in this ledger (it takes the reverse_entry permission)."
        )
    reason = clean_text(reason or "", name="reason", max_length=DESCRIPTION_MAX_LENGTH).strip()
    if not reason:
        raise ValidationFailed(
            "A reason is required to reverse an entry.",
            reason=["This field is required."],
        )
    original = (
        ledger.entry_model.objects.filter(pk=entry_id)
        .values("id", "user_id", "operation", "amount", "expires_at", "lot_moves")
        .first()
    )
    if original is None:
        raise EntryNotFound(f"No entry {entry_id} in ledger {ledger.label!r}.")
    if original["operation"] == SharedOperation.REVERSAL:
        raise ReversalNotReversible(f"Entry {entry_id} is a reversal; it cannot be reversed.")
    if original["operation"] == SharedOperation.EXPIRY:
        raise CannotReverseExpiry(f"Entry {entry_id} records an expiry; it cannot be reversed.")
    forced_moves: list[Move] | None = None
    if original["expires_at"] is not None:  # an expiring credit: take back its own lot
        forced_moves = [(original["id"], -original["amount"])]
    elif original["lot_moves"]:  # a debit that drew from lots: give back to each
        forced_moves = [(lot, -delta) for lot, delta in original["lot_moves"]]
    elif original["amount"] > 0:  # a credit that never expires: take back such credits first
        forced_moves = [(None, -original["amount"])]
    if ledger.entry_model.objects.filter(reverses_id=entry_id).exists():
        raise AlreadyReversed(f"Entry {entry_id} has already been reversed.")
    try:
        return sql.write(
            ledger=ledger,
            user_id=original["user_id"],
            operation=SharedOperation.REVERSAL.value,
            amount=-original["amount"],
            actor_id=actor_id(actor),
            description=reason,
            metadata={},
            reverses_id=original["id"],
            forced_moves=forced_moves,
        )
    except InsufficientCredits as exc:
        raise InsufficientCredits(
            f"Reversing entry {entry_id} would take the balance below zero.",
            entry=entry_id,
        ) from exc
    except DatabaseError as exc:
        raise sql.translate_db_error(exc, operation=SharedOperation.REVERSAL.value) from exc

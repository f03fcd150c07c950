"""Domain errors. Each has a stable machine-readable ``code`` and an HTTP status.

The API's exception handler, the admin and the management commands all turn these into their
own error shapes; nothing else needs to know the codes.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every refusal the ledger makes. ``details`` is safe to show to the caller."""

    code: str = "ledger_error"
    status: int = 400
    default_message: str = "The ledger refused the request."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class ValidationFailed(LedgerError):
    code = "validation_error"
    status = 400
    default_message = "The request is not valid."


class UnknownLedger(LedgerError):
    code = "not_found"
    status = 404
    default_message = "No such ledger."


class EntryNotFound(LedgerError):
    code = "not_found"
    status = 404
    default_message = "No such entry."


class OperationNotAllowed(LedgerError):
    code = "operation_not_allowed"
    status = 403
    default_message = "You may not post this operation."


class InsufficientCredits(LedgerError):
    code = "insufficient_credits"
    status = 409
    default_message = "The balance is too low for this debit."


class AlreadyClaimed(LedgerError):
    code = "already_claimed"
    status = 409
    default_message = "This operation has already been claimed."


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    status = 409
    default_message = "This entry has already been reversed."


class ReversalNotReversible(LedgerError):
    """A REVERSAL entry cannot itself be reversed: a state conflict, not a permission."""

    code = "cannot_reverse_reversal"
    status = 409
    default_message = "A reversal cannot itself be reversed; post a new entry instead."


class CannotReverseExpiry(LedgerError):
    """An EXPIRY entry records that credits lapsed; it is not undone by a reversal."""

    code = "cannot_reverse_expiry"
    status = 409
    default_message = "An expiry cannot be reversed; grant new credits instead."


class CreditsAlreadyUsed(LedgerError):
    """Reversing an expiring credit takes back its lot, which must still be whole."""

    code = "credits_already_used"
    status = 409
    default_message = "Some of these credits were already spent or expired."


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"
    status = 422
    default_message = "This idempotency key was used for a different request."


class LedgerBusy(LedgerError):
    """A lock or statement timeout on a hot balance row: nothing was written; retry."""

    code = "ledger_busy"
    status = 503
    default_message = "The account is busy; nothing was written. Retry shortly."


class HoldNotFound(LedgerError):
    code = "not_found"
    status = 404
    default_message = "No such hold."


class HoldNotPending(LedgerError):
    """The hold was captured, released or has expired: it leaves pending once, ever.

    ``details.status`` says which (``captured``, ``released`` or ``expired``).
    """

    code = "hold_not_pending"
    status = 409
    default_message = "This hold is no longer pending."

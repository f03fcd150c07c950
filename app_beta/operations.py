"""Beta's operations: the shared ones first, then its own (append only, never reorder)."""

from core_ledger.operations import extend_operations

BetaOperation = extend_operations(
    "BetaOperation",
    REFERRAL_BONUS="Referral bonus",
    PURCHASE="Purchase",
)

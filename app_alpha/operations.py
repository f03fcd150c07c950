"""Alpha's operations: the shared ones first, then its own (append only, never reorder)."""

from core_ledger.operations import extend_operations

AlphaOperation = extend_operations(
    "AlphaOperation",
    GAME_WIN="Game win",
    GAME_ENTRY_FEE="Game entry fee",
)

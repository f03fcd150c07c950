"""Alpha's ledger declaration: its models, and the rules of its own operations."""

from app_alpha.models import AlphaBalance, AlphaEntry
from app_alpha.operations import AlphaOperation
from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy

ledger: Ledger[AlphaEntry, AlphaBalance, AlphaOperation] = Ledger(
    label="alpha",
    name="Alpha (game)",
    entry_model=AlphaEntry,
    balance_model=AlphaBalance,
    operations=AlphaOperation,
    rules={
        AlphaOperation.GAME_WIN: OperationRule(Direction.CREDIT, PostedBy.STAFF),
        AlphaOperation.GAME_ENTRY_FEE: OperationRule(Direction.DEBIT, PostedBy.USER),
    },
    fixed_amounts={
        AlphaOperation.SIGNUP_CREDIT: 100,
        AlphaOperation.DAILY_REWARD: 10,
    },
)

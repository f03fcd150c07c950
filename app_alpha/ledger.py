"""Alpha's ledger declaration: its models, and the rules of its own operations."""

from datetime import timedelta

from app_alpha.models import AlphaBalance, AlphaEntry, AlphaHold, AlphaLot
from app_alpha.operations import AlphaOperation
from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy

ledger: Ledger[AlphaEntry, AlphaBalance, AlphaOperation] = Ledger(
    label="alpha",
    name="Alpha (game)",
    entry_model=AlphaEntry,
    balance_model=AlphaBalance,
    operations=AlphaOperation,
    lot_model=AlphaLot,
    hold_model=AlphaHold,
    rules={
        AlphaOperation.GAME_WIN: OperationRule(Direction.CREDIT, PostedBy.STAFF),
        AlphaOperation.GAME_ENTRY_FEE: OperationRule(Direction.DEBIT, PostedBy.USER),
    },
    fixed_amounts={
        AlphaOperation.SIGNUP_CREDIT: 100,
        AlphaOperation.DAILY_REWARD: 10,
    },
    # "10 credits a day, valid for a week"; other credits never expire unless a post says so.
    expires_after={AlphaOperation.DAILY_REWARD: timedelta(days=7)},
)

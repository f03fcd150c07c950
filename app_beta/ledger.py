"""Beta's ledger declaration: its models, and the rules of its own operations."""

from datetime import timedelta

from app_beta.models import BetaBalance, BetaEntry, BetaHold, BetaLot
from app_beta.operations import BetaOperation
from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy

ledger: Ledger[BetaEntry, BetaBalance, BetaOperation] = Ledger(
    label="beta",
    name="Beta (shop)",
    entry_model=BetaEntry,
    balance_model=BetaBalance,
    operations=BetaOperation,
    lot_model=BetaLot,
    hold_model=BetaHold,
    rules={
        BetaOperation.REFERRAL_BONUS: OperationRule(Direction.CREDIT, PostedBy.STAFF),
        BetaOperation.PURCHASE: OperationRule(Direction.DEBIT, PostedBy.USER),
    },
    fixed_amounts={BetaOperation.SIGNUP_CREDIT: 50, BetaOperation.DAILY_REWARD: 5},
    # A referral bonus lapses after 90 days unless spent.
    expires_after={BetaOperation.REFERRAL_BONUS: timedelta(days=90)},
)

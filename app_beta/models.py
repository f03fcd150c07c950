"""Beta's concrete ledger tables."""

from app_beta.operations import BetaOperation
from core_ledger.models import (
    AbstractBalance,
    AbstractHold,
    AbstractLedgerEntry,
    AbstractLot,
    entry_hold_field,
    hold_entry_field,
    lot_entry_field,
    operation_check,
    operation_field,
)


class BetaEntry(AbstractLedgerEntry):
    operation = operation_field(BetaOperation)
    hold = entry_hold_field("BetaHold")

    class Meta(AbstractLedgerEntry.Meta):
        db_table = "app_beta_entry"
        verbose_name = "beta entry"
        verbose_name_plural = "beta entries"
        constraints = [
            *AbstractLedgerEntry.Meta.constraints,
            operation_check(BetaOperation),
        ]


class BetaBalance(AbstractBalance):
    class Meta(AbstractBalance.Meta):
        db_table = "app_beta_balance"
        verbose_name = "beta balance"


class BetaLot(AbstractLot):
    entry = lot_entry_field(BetaEntry)

    class Meta(AbstractLot.Meta):
        db_table = "app_beta_lot"
        verbose_name = "beta lot"


class BetaHold(AbstractHold):
    entry = hold_entry_field(BetaEntry)
    operation = operation_field(BetaOperation)

    class Meta(AbstractHold.Meta):
        db_table = "app_beta_hold"
        verbose_name = "beta hold"
        constraints = [
            *AbstractHold.Meta.constraints,
            operation_check(BetaOperation),
        ]

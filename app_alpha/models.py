"""Alpha's concrete ledger tables."""

from app_alpha.operations import AlphaOperation
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


class AlphaEntry(AbstractLedgerEntry):
    operation = operation_field(AlphaOperation)
    hold = entry_hold_field("AlphaHold")

    class Meta(AbstractLedgerEntry.Meta):
        db_table = "app_alpha_entry"
        verbose_name = "alpha entry"
        verbose_name_plural = "alpha entries"
        constraints = [
            *AbstractLedgerEntry.Meta.constraints,
            operation_check(AlphaOperation),
        ]


class AlphaBalance(AbstractBalance):
    class Meta(AbstractBalance.Meta):
        db_table = "app_alpha_balance"
        verbose_name = "alpha balance"


class AlphaLot(AbstractLot):
    entry = lot_entry_field(AlphaEntry)

    class Meta(AbstractLot.Meta):
        db_table = "app_alpha_lot"
        verbose_name = "alpha lot"


class AlphaHold(AbstractHold):
    entry = hold_entry_field(AlphaEntry)
    operation = operation_field(AlphaOperation)

    class Meta(AbstractHold.Meta):
        db_table = "app_alpha_hold"
        verbose_name = "alpha hold"
        constraints = [
            *AbstractHold.Meta.constraints,
            operation_check(AlphaOperation),
        ]

"""System checks that catch a misdeclared ledger at start-up rather than at the first post."""

from __future__ import annotations

from typing import Any

from django.core import checks

from core_ledger.ledger import registry
from core_ledger.models import AbstractBalance, AbstractLedgerEntry


@checks.register()
def check_ledgers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for ledger in registry:
        if not issubclass(ledger.entry_model, AbstractLedgerEntry):
            errors.append(
                checks.Error(
                    f"Ledger {ledger.label!r}: entry_model must subclass AbstractLedgerEntry.",
                    id="core_ledger.E001",
                )
            )
        if not issubclass(ledger.balance_model, AbstractBalance):
            errors.append(
                checks.Error(
                    f"Ledger {ledger.label!r}: balance_model must subclass AbstractBalance.",
                    id="core_ledger.E002",
                )
            )
        field = ledger.entry_model._meta.get_field("operation")
        choices = {value for value, _ in (field.choices or [])}
        if choices != set(ledger.operations.values):
            errors.append(
                checks.Error(
                    f"Ledger {ledger.label!r}: the entry model's operation choices differ from the "
                    "declared operations.",
                    hint="Use operation = operation_field(YourOperation) on the entry model.",
                    id="core_ledger.E003",
                )
            )
    return errors

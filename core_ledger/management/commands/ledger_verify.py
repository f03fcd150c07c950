"""Check every ledger invariant; exit 1 and list each discrepancy when any is broken."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from core_ledger.management.base import (
    LONG_LOCK_TIMEOUT_MS,
    LONG_STATEMENT_TIMEOUT_MS,
    LedgerCommand,
)
from core_ledger.selectors import ledger_check


class Command(LedgerCommand):
    help = """Verify a ledger (or every ledger): each balance equals the sum of its entries,
each user's balance_after chain is unbroken, no balance is negative, and every reversal undoes
exactly one entry of the same user. Prints a summary; lists each discrepancy and exits with
status 1 when there is any (suitable for cron or CI).

Examples:
  python manage.py ledger_verify
  python manage.py ledger_verify --ledger alpha
"""

    ledger_required = False
    # One aggregate over every entry: it may run long on a big ledger.
    statement_timeout_ms = LONG_STATEMENT_TIMEOUT_MS
    lock_timeout_ms = LONG_LOCK_TIMEOUT_MS

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for ledger in self.get_ledgers(options["ledger"]):
            found = ledger_check(ledger=ledger)
            total += len(found)
            if not found:
                self.stdout.write(self.style.SUCCESS(f"{ledger.label}: OK, every invariant holds."))
                continue
            self.stdout.write(self.style.ERROR(f"{ledger.label}: {len(found)} discrepancies"))
            for discrepancy in found:
                self.stdout.write(f"  {discrepancy}")
        if total:
            raise CommandError(f"{total} discrepancies found; see the list above.")

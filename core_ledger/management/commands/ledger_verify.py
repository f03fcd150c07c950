"""Check the ledger invariants, incrementally from a checkpoint or in full; exit 1 on any break."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core_ledger.ledger import AnyLedger
from core_ledger.management.base import (
    LONG_LOCK_TIMEOUT_MS,
    LONG_STATEMENT_TIMEOUT_MS,
    LedgerCommand,
)
from core_ledger.selectors import (
    VerifyProgress,
    VerifyResult,
    ledger_verify_full,
    ledger_verify_since,
    settled_entry_id,
    verify_checkpoint_get,
)
from core_ledger.services.verification import verify_checkpoint_save

SHOWN = 1000  # discrepancies listed per ledger; the count covers them all


class Command(LedgerCommand):
    help = """Verify a ledger (or every ledger): each balance equals the sum of its entries,
each user's balance_after chain is unbroken, no balance is negative, every reversal undoes
exactly one entry of the same user, each entry's day is its UTC date, and the expiring credits
(lots) add up. Prints a summary; lists each discrepancy and exits with status 1 when there is
any (suitable for cron or CI).

Incremental by default: a run that finds nothing stores a checkpoint (a high-water entry id per
ledger); the next run checks only the entries after it, the seam with the entries before it
(each user's first new entry chains from their last checked one) and the balances and lots of
the users they moved. Without a checkpoint, or with --full, the whole ledger is checked,
streamed in batches (constant memory) with progress and throughput on stderr.

The checkpoint trails the newest entry by --settle seconds (default 60): an entry id is taken
before its transaction commits, so entries of the last minute are checked again by the next run
rather than skipped if one committed late. A --since run past the stored checkpoint does not move
it (the entries in between were not checked).

Examples:
  python manage.py ledger_verify                    # incremental (full the first time)
  python manage.py ledger_verify --ledger alpha --full
  python manage.py ledger_verify --ledger alpha --since 1200000
"""

    ledger_required = False
    # A full run reads every entry: it may run long on a big ledger.
    statement_timeout_ms = LONG_STATEMENT_TIMEOUT_MS
    lock_timeout_ms = LONG_LOCK_TIMEOUT_MS

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--full", action="store_true", help="Check the whole ledger, whatever the checkpoint."
        )
        mode.add_argument(
            "--since",
            type=int,
            metavar="ENTRY_ID",
            help="Check the entries after this id (and the seam), not from the checkpoint.",
        )
        parser.add_argument(
            "--settle",
            type=int,
            default=60,
            metavar="SECONDS",
            help="The stored checkpoint stays this far behind the newest entry (default 60).",
        )
        parser.add_argument(
            "--no-checkpoint",
            action="store_true",
            help="Do not store a checkpoint after a clean run.",
        )
        parser.add_argument(
            "--batch-users",
            type=int,
            default=20_000,
            metavar="N",
            help="A full run checks this many user ids per batch (default 20000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["since"] is not None and options["since"] < 0:
            raise CommandError("--since must be an entry id (0 or more).")
        if options["settle"] < 0 or options["batch_users"] < 1:
            raise CommandError("--settle must be 0 or more and --batch-users 1 or more.")
        total = 0
        for ledger in self.get_ledgers(options["ledger"]):
            total += self.verify(ledger, options)
        if total:
            raise CommandError(f"{total} discrepancies found; see the list above.")

    def verify(self, ledger: AnyLedger, options: dict[str, Any]) -> int:
        started = time.perf_counter()
        since: int | None = options["since"]
        checkpoint = verify_checkpoint_get(ledger=ledger)
        stored = checkpoint.entry_id if checkpoint is not None else None
        if since is None and not options["full"]:
            since = stored
        # A run may move the checkpoint only if it covers everything after it: a full run, or
        # one from the stored mark or before (--since past the mark would skip entries).
        contiguous = since is None or (stored is not None and since <= stored)
        if since is None:
            result = ledger_verify_full(
                ledger=ledger, users_per_batch=options["batch_users"], on_progress=self.progress
            )
        else:
            result = ledger_verify_since(ledger=ledger, since=since)
        seconds = time.perf_counter() - started
        self.report(result, seconds)
        if result.total:
            return result.total
        if not options["no_checkpoint"] and contiguous and result.last_entry_id is not None:
            mark = settled_entry_id(
                ledger=ledger, settle_seconds=options["settle"], at_most=result.last_entry_id
            )
            if mark is not None and (since is None or mark > since):
                verify_checkpoint_save(
                    ledger=ledger, entry_id=mark, full=since is None, entries_checked=result.entries
                )
                self.stderr.write(f"{ledger.label}: checkpoint at entry {mark}")
        return 0

    def progress(self, p: VerifyProgress) -> None:
        what = "user ids" if p.stage == "users" else "entry ids"
        share = 100 * p.users_done / p.users_total if p.users_total else 100.0
        self.stderr.write(
            f"{p.ledger}: {what} {p.users_done:,}/{p.users_total:,} ({share:.0f}%), "
            f"{p.entries:,} entries"
        )
        self.stderr.flush()

    def report(self, result: VerifyResult, seconds: float) -> None:
        scope = "full" if result.since is None else f"since entry {result.since}"
        rate = result.entries / seconds if seconds > 0 else 0.0
        self.stderr.write(
            f"{result.ledger}: {scope}: {result.entries:,} entries in {seconds:.2f} s "
            f"({rate:,.0f} entries/s)"
        )
        if not result.total:
            self.stdout.write(self.style.SUCCESS(f"{result.ledger}: OK, every invariant holds."))
            return
        self.stdout.write(self.style.ERROR(f"{result.ledger}: {result.total} discrepancies"))
        for discrepancy in result.discrepancies[:SHOWN]:
            self.stdout.write(f"  {discrepancy}")
        if result.total > SHOWN:
            self.stdout.write(f"  … and {result.total - SHOWN} more")

"""Write down expired credits: an EXPIRY entry for every lot whose expires_at has passed."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from core_ledger.management.base import LedgerCommand
from core_ledger.services.holds import holds_expire
from core_ledger.services.lots import lots_expire


class Command(LedgerCommand):
    help = """Write an EXPIRY entry for every lot whose expires_at has passed, and write down every
pending hold whose expires_at has passed (status expired, its credits back to the lots), in all
ledgers or one.

Expired credits cannot be spent from the moment they expire, whether or not this has run: the
ledger writes the EXPIRY entry itself before the user's next write. This command writes them
down for everyone, so balances, exports and reports show them. Batched (one transaction per
batch of users), idempotent (a rerun finds nothing to do), and safe to run beside posts and
beside another ledger_expire. Run it from cron or any scheduler, e.g. every 5 minutes.

Examples:
  python manage.py ledger_expire
  python manage.py ledger_expire --ledger alpha --batch-size 500
"""

    ledger_required = False

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Users per transaction (1-50000, default 1000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 50_000:
            raise CommandError("--batch-size must be between 1 and 50000.")
        bar_stream = getattr(self.stderr, "_out", sys.stderr)
        for ledger in self.get_ledgers(options["ledger"]):
            # Holds first: credits they give back to lots that have expired expire just after.
            with tqdm(
                unit="user",
                desc=f"{ledger.label} holds",
                file=bar_stream,
                disable=not bar_stream.isatty(),
            ) as bar:
                held = holds_expire(ledger=ledger, batch_size=batch_size, on_batch=bar.update)
            if held.holds:  # a ledger without due holds prints what it printed before holds
                self.stdout.write(
                    f"{ledger.label}: {held.holds} holds expired for {held.users} users, "
                    f"{held.credits} credits freed."
                )
            with tqdm(
                unit="user",
                desc=f"{ledger.label} expiry",
                file=bar_stream,
                disable=not bar_stream.isatty(),
            ) as bar:
                summary = lots_expire(ledger=ledger, batch_size=batch_size, on_batch=bar.update)
            self.stdout.write(
                f"{ledger.label}: {summary.lots} lots expired for {summary.users} users, "
                f"{summary.credits} credits."
            )

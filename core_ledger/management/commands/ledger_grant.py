"""Bulk-grant a credit operation to many users, batched and idempotent."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from core_ledger.management.base import (
    LedgerCommand,
    parse_duration,
    parse_moment,
    resolve_user_ids,
)
from core_ledger.selectors import active_users
from core_ledger.services import grant_bulk

MAX_LISTED_ERRORS = 20


class Command(LedgerCommand):
    help = """Grant a credit operation to every active user, or to the users listed in a file.

Batched and set-based (one transaction per batch, not per user) and idempotent: users who
already have it are skipped, so a rerun posts nothing new. DAILY_REWARD is naturally once per
user per UTC day and SIGNUP_CREDIT once per user; any other operation needs --idempotency-key
(the same key on a rerun skips everyone who got it). A progress bar shows on a terminal; a
summary (granted / already had / failed) ends the run. Exit status 1 if any grant failed.

The users file holds one user per line (blank lines and # comments skipped): the user's username,
i.e. the value of the user model's USERNAME_FIELD (an email where users log in by email); with
--ids, the user's id (primary key) instead. Users not found are reported and count as failed.

Examples:
  python manage.py ledger_grant --ledger alpha --operation DAILY_REWARD --all-users
  python manage.py ledger_grant --ledger beta --operation CREDIT_ADD --amount 25 \\
      --users-file winners.txt --idempotency-key promo-2026-11
  python manage.py ledger_grant --ledger beta --operation CREDIT_ADD --amount 25 \\
      --users-file winner-ids.txt --ids --idempotency-key promo-2026-12
  python manage.py ledger_grant --ledger alpha --operation GAME_WIN --amount 5 --all-users \\
      --idempotency-key tournament-42 --batch-size 5000
  python manage.py ledger_grant --ledger beta --operation CREDIT_ADD --amount 10 --all-users \\
      --idempotency-key winter-gift --expires-in 30d
"""

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--operation", required=True, help="A credit operation.")
        parser.add_argument("--amount", type=int, help="Credits per user (omit for fixed).")
        lapse = parser.add_mutually_exclusive_group()
        lapse.add_argument(
            "--expires-at",
            type=parse_moment,
            metavar="ISO8601",
            help="The granted credits lapse at this moment (e.g. 2027-01-31T00:00:00Z).",
        )
        lapse.add_argument(
            "--expires-in",
            type=parse_duration,
            metavar="DURATION",
            help="The granted credits lapse this long from now: 30d, 12h, 90m, 2w or seconds. "
            "Default (neither option): the operation's lifetime, or never.",
        )
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--all-users", action="store_true", help="Every active user.")
        who.add_argument(
            "--users-file",
            help="File with one username (USERNAME_FIELD value) per line, or one id with --ids.",
        )
        parser.add_argument(
            "--ids",
            action="store_true",
            help="The lines of --users-file are user ids (primary keys), not usernames.",
        )
        parser.add_argument(
            "--batch-size", type=int, default=2000, help="Users per transaction (default 2000)."
        )
        parser.add_argument(
            "--idempotency-key",
            help="Key stored on each entry; required for operations without a fixed frequency.",
        )
        parser.add_argument("--description", default="", help="Free text stored on each entry.")

    def handle(self, *args: Any, **options: Any) -> None:
        ledger = self.get_ledger(options["ledger"])
        batch_size = options["batch_size"]
        if not 1 <= batch_size <= 50_000:
            raise CommandError("--batch-size must be between 1 and 50000.")
        unknown: list[str] = []
        if options["ids"] and not options["users_file"]:
            raise CommandError("--ids only applies to --users-file.")
        user_ids: Iterator[int] = iter(())
        if options["all_users"]:
            # The service finds the active users lacking the grant itself (a rerun reads once).
            total: int | None = active_users().count()
        else:
            path = Path(options["users_file"])
            if not path.is_file():
                raise CommandError(f"No such users file: {path}")
            total = None
            user_ids = self._ids_from_file(path, batch_size, unknown, by_id=options["ids"])

        # The bar goes to stderr so that stdout stays a clean summary; none when not a terminal.
        bar_stream = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(
            total=total,
            unit="user",
            desc=f"{ledger.label} {options['operation']}",
            file=bar_stream,
            disable=not bar_stream.isatty(),
        ) as bar:
            summary = grant_bulk(
                ledger=ledger,
                operation=ledger.operation(options["operation"]),
                user_ids=user_ids,
                all_active_users=options["all_users"],
                amount=options["amount"],
                idempotency_key=options["idempotency_key"],
                description=options["description"],
                batch_size=batch_size,
                on_batch=bar.update,
                expires_at=options["expires_at"]
                or (timezone.now() + options["expires_in"] if options["expires_in"] else None),
            )
        failed = summary.failed + len(unknown)
        self.stdout.write(
            f"{ledger.label} {options['operation']}: {summary.granted} granted, "
            f"{summary.skipped} already had it, {summary.conflicts} key conflicts, "
            f"{failed} failed."
        )
        errors = [f"unknown user {name!r}" for name in unknown] + summary.errors
        for error in errors[:MAX_LISTED_ERRORS]:
            self.stdout.write(f"  failed: {error}")
        if len(errors) > MAX_LISTED_ERRORS:
            self.stdout.write(f"  … and {len(errors) - MAX_LISTED_ERRORS} more")
        if summary.conflicts:
            raise CommandError(
                f"idempotency_key_reused: {summary.conflicts} user(s) had this key for another "
                "request (another amount, operation or description); use a new key."
            )
        if failed:
            raise CommandError(f"{failed} grant(s) failed; rerun after fixing them (idempotent).")
        self.stdout.write(self.style.SUCCESS("Done."))

    @staticmethod
    def _ids_from_file(
        path: Path, batch_size: int, unknown: list[str], *, by_id: bool
    ) -> Iterator[int]:
        """Stream the file's users as ids; unknown names are collected into ``unknown``."""
        with path.open(encoding="utf-8") as lines:
            for item in resolve_user_ids(lines, by_id=by_id, chunk_size=batch_size):
                if isinstance(item, str):
                    unknown.append(item)
                else:
                    yield item

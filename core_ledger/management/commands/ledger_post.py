"""Post one entry to a ledger through the service, as the system."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from core_ledger.management.base import LedgerCommand, parse_moment
from core_ledger.services import entry_post


class Command(LedgerCommand):
    help = """Post one entry through the ledger service (as the system) and print it.

The amount is positive; the operation gives the sign. Fixed-amount operations (SIGNUP_CREDIT,
DAILY_REWARD) take no --amount. With --idempotency-key a rerun replays the first entry and posts
nothing new. Domain errors print one line and exit with status 1.

The user is --user USERNAME (the value of the user model's USERNAME_FIELD: a username, or an
email where the model logs in by email) or --user-id ID (the primary key), never a guess between
the two.

Examples:
  python manage.py ledger_post --ledger alpha --user alice --operation CREDIT_ADD --amount 50
  python manage.py ledger_post --ledger beta --user-id 42 --operation PURCHASE --amount 5 \\
      --idempotency-key order-1234 --description "Order 1234"
  python manage.py ledger_post --ledger alpha --user alice --operation DAILY_REWARD
  python manage.py ledger_post --ledger beta --user alice --operation CREDIT_ADD --amount 20 \\
      --expires-at 2027-06-30T23:59:59Z
"""

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        self.add_user_arguments(parser, required=True, what="whose account the entry moves")
        parser.add_argument("--operation", required=True, help="Operation name, e.g. CREDIT_ADD.")
        parser.add_argument(
            "--amount", type=int, help="Positive whole credits (omit for fixed amounts)."
        )
        parser.add_argument("--idempotency-key", help="Makes a rerun replay instead of repost.")
        parser.add_argument("--description", default="", help="Free text stored on the entry.")
        parser.add_argument(
            "--expires-at",
            type=parse_moment,
            metavar="ISO8601",
            help="A credit's credits lapse then (e.g. 2027-01-31T00:00:00Z); default: the "
            "operation's lifetime, or never.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ledger = self.get_ledger(options["ledger"])
        user = self.get_user(options)
        result = entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=ledger.operation(options["operation"]),
            amount=options["amount"],
            idempotency_key=options["idempotency_key"],
            description=options["description"],
            expires_at=options["expires_at"],
        )
        entry = result.entry
        line = (
            f"entry #{entry.pk} in {ledger.label}: {entry.operation} {entry.amount:+d} "
            f"for {user.get_username()} (id {user.pk}), balance after {entry.balance_after}, "
            f"at {entry.created_at.isoformat()}"
            + (f", expires {entry.expires_at.isoformat()}" if entry.expires_at else "")
        )
        if result.replayed:
            self.stdout.write(
                self.style.WARNING(f"Replayed {line} (idempotency key seen; nothing new posted)")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Posted {line}"))

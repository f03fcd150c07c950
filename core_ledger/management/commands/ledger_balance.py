"""Show one user's balance, or the table of a ledger's balances."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from core_ledger.management.base import LedgerCommand
from core_ledger.selectors import available_get, balance_list, balance_snapshot, username_field

FORMATS = ("table", "json", "csv")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class Command(LedgerCommand):
    help = """Show one user's balance (--user or --user-id), or the ledger's balances, largest first.

--user is the user's username (the value of the user model's USERNAME_FIELD, e.g. an email where
users log in by email); --user-id is the primary key. The "username" column holds the
USERNAME_FIELD value (Django's get_username()).

Examples:
  python manage.py ledger_balance --ledger alpha --user alice
  python manage.py ledger_balance --ledger alpha --top 10
  python manage.py ledger_balance --ledger beta --format csv > beta-balances.csv
  python manage.py ledger_balance --ledger beta --user-id 42 --format json
"""

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        self.add_user_arguments(parser, required=False, what="show only this user's balance")
        parser.add_argument("--top", type=int, help="Only the N largest balances.")
        parser.add_argument("--format", choices=FORMATS, default="table", help="Default: table.")

    def handle(self, *args: Any, **options: Any) -> None:
        ledger = self.get_ledger(options["ledger"])
        fmt = options["format"]
        user = self.get_user(options)
        if user is not None:
            snapshot = balance_snapshot(ledger=ledger, user_id=user.pk)
            row = {
                "ledger": ledger.label,
                "user_id": user.pk,
                "username": user.get_username(),
                "balance": snapshot.balance,
                "held": snapshot.held,
                "available": snapshot.available,
                "next_expiry": _iso(snapshot.expiring[0].expires_at if snapshot.expiring else None),
                "expiring": snapshot.expiring[0].amount if snapshot.expiring else 0,
            }
            self._write_rows(fmt, [row], single=True)
            return
        top = options["top"]
        if top is not None and top < 1:
            raise CommandError("--top must be a positive number.")
        qs = (
            balance_list(ledger=ledger)
            .order_by("-balance", "user_id")
            .values(
                "user_id",
                f"user__{username_field()}",
                "balance",
                "held",
                "updated_at",
                "next_expiry",
                "next_hold_expiry",
            )
        )
        if top is not None:
            qs = qs[:top]
        now = timezone.now()
        rows = (
            {
                "ledger": ledger.label,
                "user_id": r["user_id"],
                "username": r[f"user__{username_field()}"],
                "balance": r["balance"],
                "held": r["held"],
                # Only a user whose lots or holds expired since the last write costs a read here.
                "available": r["balance"] - r["held"]
                if (r["next_expiry"] is None or r["next_expiry"] > now)
                and (r["next_hold_expiry"] is None or r["next_hold_expiry"] > now)
                else available_get(ledger=ledger, user_id=r["user_id"]),
                "next_expiry": _iso(r["next_expiry"]),
                "updated_at": r["updated_at"].isoformat(),
            }
            for r in qs.iterator(chunk_size=2000)
        )
        self._write_rows(fmt, rows, single=False)

    def _write_rows(self, fmt: str, rows: Any, *, single: bool) -> None:
        if fmt == "json":
            data = list(rows)
            self.stdout.write(json.dumps(data[0] if single else data, indent=2))
            return
        columns = ["ledger", "user_id", "username", "balance", "held", "available", "next_expiry"]
        columns += ["expiring"] if single else ["updated_at"]
        if fmt == "csv":
            writer = csv.DictWriter(self.stdout, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            return
        if single:
            (row,) = rows
            line = f"{row['username']} (id {row['user_id']}) in {row['ledger']}: {row['balance']}"
            if row["available"] != row["balance"] or row["next_expiry"]:
                line += f" (available {row['available']}"
                if row["held"]:
                    line += f", held {row['held']}"
                if row["next_expiry"]:
                    line += f"; {row['expiring']} expire at {row['next_expiry']}"
                line += ")"
            self.stdout.write(line)
            return
        self.stdout.write(
            f"{'user_id':>10}  {'username':<30} {'balance':>15} {'held':>12} {'available':>15}  "
            f"{'next_expiry':<32}  updated_at"
        )
        count = 0
        for row in rows:
            count += 1
            self.stdout.write(
                f"{row['user_id']:>10}  {row['username']:<30} {row['balance']:>15} "
                f"{row['held']:>12} {row['available']:>15}  {row['next_expiry'] or '-':<32}  "
                f"{row['updated_at']}"
            )
        self.stdout.write(f"({count} balances)")

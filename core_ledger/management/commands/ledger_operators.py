"""Give or take a ledger's rights (post any entry, reverse, view all accounts) in one step."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from core_ledger.management.base import LedgerCommand
from core_ledger.services.operators import (
    operator_grant,
    operator_group_name,
    operator_list,
    operator_revoke,
)


class Command(LedgerCommand):
    help = """Grant, revoke or list the operators of a ledger.

An operator may post any operation for any user, reverse entries and read every account in that
ledger (the permissions post_any_entry, reverse_entry, view_all_accounts, and the admin's view
pages), through the API and the admin. is_staff alone grants none of that: it only opens the
admin; --staff sets it for people who will use the admin. Service accounts that only call the API
need no --staff. Rights come from the group "<label> ledger operators".

Examples:
  python manage.py ledger_operators --ledger alpha --grant --user alice --staff
  python manage.py ledger_operators --ledger beta --grant --user-id 7
  python manage.py ledger_operators --ledger alpha --revoke --user alice
  python manage.py ledger_operators --ledger alpha
"""

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--grant", action="store_true", help="Make the user an operator.")
        action.add_argument("--revoke", action="store_true", help="Take the user's rights away.")
        self.add_user_arguments(parser, required=False, what="the operator to grant or revoke")
        parser.add_argument(
            "--staff", action="store_true", help="With --grant: also let them log into the admin."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ledger = self.get_ledger(options["ledger"])
        user = self.get_user(options)
        if (options["grant"] or options["revoke"]) and user is None:
            raise CommandError("--grant and --revoke need --user or --user-id.")
        if options["grant"]:
            group = operator_grant(ledger=ledger, user=user, staff=options["staff"])
            admin = " and may log into the admin" if user.is_staff else " (API only: not staff)"
            self.stdout.write(
                self.style.SUCCESS(
                    f"{user.get_username()} (id {user.pk}) is now an operator of {ledger.label} "
                    f'(group "{group.name}"){admin}.'
                )
            )
        elif options["revoke"]:
            operator_revoke(ledger=ledger, user=user)
            self.stdout.write(
                f"{user.get_username()} (id {user.pk}) is no longer an operator of {ledger.label}."
            )
        else:
            members = operator_list(ledger=ledger)
            self.stdout.write(
                f'Operators of {ledger.label} (group "{operator_group_name(ledger)}"):'
            )
            for user in members:
                staff = "staff" if user.is_staff else "API only"
                self.stdout.write(f"  {user.get_username()} (id {user.pk}, {staff})")
            if not members:
                self.stdout.write("  none")

"""Manage webhook endpoints: add (prints the secret once), list, disable, enable, remove."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_ledger.exceptions import LedgerError
from core_ledger.models import WebhookEndpoint
from core_ledger.services import webhooks


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part.strip()]


class Command(BaseCommand):
    help = """Manage the endpoints that ledger_deliver POSTs events to.

add prints the new endpoint's id and, on a line of its own, "secret: <secret>": the only time
the secret is shown. Receivers verify each delivery with it (core_ledger.webhooks.verify).
Without --events an endpoint gets every event type; without --ledgers, every ledger. A new
endpoint gets the events from now on (--from-start: every event since the first).

Examples:
  python manage.py ledger_webhook add https://shop.example.com/hooks/ledger
  python manage.py ledger_webhook add https://game.example.com/hook --events entry.posted --ledgers alpha
  python manage.py ledger_webhook list
  python manage.py ledger_webhook disable 3
  python manage.py ledger_webhook enable 3     # also clears a failing endpoint's state
  python manage.py ledger_webhook remove 3
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", metavar="add|list|disable|enable|remove")
        sub.required = True
        add = sub.add_parser("add", help="Add an endpoint and print its secret.")
        add.add_argument("url", help="http:// or https:// URL the events are POSTed to.")
        add.add_argument("--events", help="Comma-separated event types (default: every type).")
        add.add_argument("--ledgers", help="Comma-separated ledger labels (default: every one).")
        add.add_argument(
            "--from-start", action="store_true", help="Deliver every event since the first."
        )
        sub.add_parser("list", help="List the endpoints and their state.")
        for name, text in (
            ("disable", "Stop delivering to an endpoint (its cursor is kept)."),
            ("enable", "Deliver again; clears the failing state."),
            ("remove", "Delete an endpoint and its delivery log."),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument("id", type=int, help="The endpoint's id (see list).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"_{options['action']}")(options)
        except LedgerError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None

    def _add(self, options: dict[str, Any]) -> None:
        created = webhooks.webhook_endpoint_create(
            url=options["url"],
            event_types=_split(options["events"]),
            ledgers=_split(options["ledgers"]),
            from_start=options["from_start"],
        )
        self.stdout.write(f"Added webhook endpoint {created.endpoint.pk}: {created.endpoint.url}")
        self.stdout.write(f"secret: {created.secret}")
        self.stdout.write("Keep the secret: it is not shown again.")

    def _list(self, options: dict[str, Any]) -> None:
        endpoints = list(WebhookEndpoint.objects.order_by("pk"))
        if not endpoints:
            self.stdout.write("No webhook endpoints.")
            return
        for e in endpoints:
            state = "failing" if e.failing else ("active" if e.active else "disabled")
            self.stdout.write(
                f"{e.pk}\t{state}\t{e.url}\tevents={','.join(e.event_types) or '*'}\t"
                f"ledgers={','.join(e.ledgers) or '*'}\tdelivered={e.delivered}"
                + (
                    f"\tnext_attempt_at={e.next_attempt_at:%Y-%m-%dT%H:%M:%SZ}"
                    if e.next_attempt_at
                    else ""
                )
                + (f"\tlast_error={e.last_error}" if e.last_error else "")
            )

    def _disable(self, options: dict[str, Any]) -> None:
        webhooks.webhook_endpoint_set_active(endpoint_id=options["id"], active=False)
        self.stdout.write(f"Disabled webhook endpoint {options['id']}.")

    def _enable(self, options: dict[str, Any]) -> None:
        webhooks.webhook_endpoint_set_active(endpoint_id=options["id"], active=True)
        self.stdout.write(f"Enabled webhook endpoint {options['id']}.")

    def _remove(self, options: dict[str, Any]) -> None:
        webhooks.webhook_endpoint_remove(endpoint_id=options["id"])
        self.stdout.write(f"Removed webhook endpoint {options['id']}.")

"""The webhook delivery worker: POSTs every event to the endpoints that want it, signed."""

from __future__ import annotations

import signal
import threading
from argparse import RawDescriptionHelpFormatter
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from core_ledger.services.webhooks import deliver_round


class Command(BaseCommand):
    help = """Deliver events to the webhook endpoints, until stopped (--once: drain and exit).

Per endpoint, events go out in feed order, at least once, signed (Ledger-Signature); a failure
is retried with backoff (WEBHOOK_BACKOFF: 10 s, 1 min, 10 min, 1 h, 6 h, 24 h), then the
endpoint is marked failing. Several workers may run at once (on one host or many): an advisory
lock per endpoint keeps two of them from delivering to one endpoint together. SIGTERM or
Ctrl-C stops after the current round; a killed worker loses nothing (its undelivered events go
out again).

Examples:
  python manage.py ledger_deliver
  python manage.py ledger_deliver --once
  python manage.py ledger_deliver --concurrency 8 --batch-size 200
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Deliver what is due now, then exit."
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="Endpoints served at once, each in its own thread (1-64, default 4).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=100,
            help="Events per endpoint per turn (1-1000, default 100).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Seconds to wait when nothing was due (default 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency, batch_size = options["concurrency"], options["batch_size"]
        if not 1 <= concurrency <= 64:
            raise CommandError("--concurrency must be between 1 and 64.")
        if not 1 <= batch_size <= 1000:
            raise CommandError("--batch-size must be between 1 and 1000.")
        if not 0 < options["interval"] <= 3600:
            raise CommandError("--interval must be more than 0 and at most 3600 seconds.")
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        if threading.current_thread() is threading.main_thread() and not options["once"]:
            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        delivered = failed = 0
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            while not stop.is_set():
                try:
                    runs = deliver_round(batch_size=batch_size, concurrency=concurrency, pool=pool)
                except Exception as exc:
                    if options["once"]:
                        raise
                    # A long-running worker outlives a database restart or a bad round: say
                    # so, drop the connection, and try again after the interval.
                    self.stderr.write(f"ledger_deliver: round failed: {exc!r}")
                    connections.close_all()
                    stop.wait(options["interval"])
                    continue
                delivered += sum(run.delivered for run in runs)
                failed += sum(1 for run in runs if run.failed)
                if any(run.more for run in runs):
                    continue  # full batches went out: more is waiting
                if options["once"]:
                    break
                stop.wait(options["interval"])
        self.stdout.write(f"{delivered} events delivered, {failed} failed attempts.")

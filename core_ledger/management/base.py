"""The base of every ledger command: ``--ledger``, user look-up and domain errors as CommandError.

Commands are thin: they parse arguments, resolve the ledger and the users, call one service or
selector, and print. Every :class:`~core_ledger.exceptions.LedgerError` becomes a one-line
``CommandError`` (exit status 1, no traceback), so a cron job or a shell sees a clear message.
"""

from __future__ import annotations

import os
import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from core_ledger.db_timeouts import timeouts_apply
from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger, registry
from core_ledger.selectors import user_find

# Timeouts of commands that read a whole ledger (ledger_verify, ledger_export): hours, not the
# seconds of a request; still bounded so a forgotten job cannot hold a snapshot for days.
LONG_STATEMENT_TIMEOUT_MS = 6 * 60 * 60 * 1000
LONG_LOCK_TIMEOUT_MS = 60 * 1000


def _known() -> str:
    return ", ".join(registry.labels()) or "none (no ledger app is installed)"


class LedgerCommand(BaseCommand):
    """A command that works on one registered ledger (``--ledger <label>``), or on all of them.

    Subclasses set ``ledger_required = False`` when ``--ledger`` is optional (then it means "every
    ledger"), add their own arguments in :meth:`add_ledger_arguments`, and use :meth:`get_ledger`,
    :meth:`get_ledgers` and :meth:`get_user` in ``handle``.
    """

    ledger_required = True
    #: This command's ``statement_timeout`` and ``lock_timeout`` in ms (0 = none). ``None``
    #: leaves the connection's own (``DATABASE_URL`` options, the server's defaults): request
    #: timeouts never apply to commands. Long-running commands set long ones.
    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Keep the line breaks of the examples in ``help``.
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        # Not argparse ``choices``: an unknown label must be a CommandError (exit 1) that lists
        # the known ledgers, and the registry is only complete once the apps are ready.
        parser.add_argument(
            "--ledger",
            required=self.ledger_required,
            metavar="LABEL",
            help=(
                f"Ledger label, one of: {_known()}."
                + ("" if self.ledger_required else " Default: every ledger.")
            ),
        )
        self.add_ledger_arguments(parser)

    def add_ledger_arguments(self, parser: CommandParser) -> None:
        """Hook for the command's own arguments."""

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            timeouts_apply(statement_ms=self.statement_timeout_ms, lock_ms=self.lock_timeout_ms)
            return super().execute(*args, **options)
        except LedgerError as exc:
            # One line: the stable code, then the human message.
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        except DatabaseError as exc:
            # Still one line, never a traceback: the usual cause is a database not migrated yet.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(
                f"database error: {first} (is the database migrated? python manage.py migrate)"
            ) from exc
        except BrokenPipeError:
            # The reader went away (`... | head`): stop quietly, as Unix tools do, and keep the
            # interpreter's final flush from raising again.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return None

    # --- helpers for handle() ---------------------------------------------------------------

    def get_ledger(self, label: str | None) -> AnyLedger:
        """The ledger with ``label``; a CommandError naming the known ledgers otherwise."""
        if not label:
            raise CommandError(f"--ledger is required. Known ledgers: {_known()}.")
        if label not in registry.labels():
            raise CommandError(f"Unknown ledger {label!r}. Known ledgers: {_known()}.")
        return registry.get(label)

    def get_ledgers(self, label: str | None) -> list[AnyLedger]:
        """The one ledger named, or every registered ledger when ``label`` is empty."""
        return [self.get_ledger(label)] if label else list(registry)

    def get_user(self, value: str | int) -> Any:
        """A user by username, else by id when ``value`` is a number; CommandError if none."""
        user = user_find(text=value)
        if user is None:
            raise CommandError(
                f"No user {str(value).strip()!r} (looked up by username, then by id)."
            )
        return user


def resolve_user_ids(values: Iterable[str], *, chunk_size: int = 2000) -> Iterator[int | str]:
    """Map usernames or ids to user ids, ``chunk_size`` at a time (two queries per chunk).

    Yields the id of each known user, and the original text of each unknown one (a ``str``),
    so the caller can report it. Blank lines and ``#`` comments are skipped.
    """
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    chunk: list[str] = []

    def flush(items: list[str]) -> Iterator[int | str]:
        by_name = dict(
            User.objects.filter(**{f"{username_field}__in": items}).values_list(
                username_field, "pk"
            )
        )
        numeric = {int(v) for v in items if v not in by_name and v.isdigit()}
        by_id = set(User.objects.filter(pk__in=numeric).values_list("pk", flat=True))
        for v in items:
            if v in by_name:
                yield by_name[v]
            elif v.isdigit() and int(v) in by_id:
                yield int(v)
            else:
                yield v

    for raw in values:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        chunk.append(text)
        if len(chunk) >= chunk_size:
            yield from flush(chunk)
            chunk = []
    if chunk:
        yield from flush(chunk)


def active_user_ids(*, chunk_size: int = 2000) -> Iterator[int]:
    """Every active user's id in id order, fetched ``chunk_size`` at a time (keyset pagination).

    Constant memory, and no cursor held open across the caller's own transactions.
    """
    qs = get_user_model().objects.filter(is_active=True).order_by("pk")
    last = 0
    while True:
        ids = list(qs.filter(pk__gt=last).values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return
        yield from ids
        last = ids[-1]

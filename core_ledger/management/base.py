"""The base of every ledger command: ``--ledger``, user look-up and domain errors as CommandError.

Commands are thin: they parse arguments, resolve the ledger and the users, call one service or
selector, and print. Every :class:`~core_ledger.exceptions.LedgerError` becomes a one-line
``CommandError`` (exit status 1, no traceback), so a cron job or a shell sees a clear message.
"""

from __future__ import annotations

import os
import re
import sys
from argparse import RawDescriptionHelpFormatter
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils.dateparse import parse_datetime

from core_ledger.db_timeouts import timeouts_apply
from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger, registry
from core_ledger.selectors import user_get, username_field

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
    :meth:`get_ledgers` and :meth:`get_user` in ``handle``; commands that take a user add
    ``--user`` / ``--user-id`` with :meth:`add_user_arguments`.
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

    def add_user_arguments(self, parser: CommandParser, *, required: bool, what: str) -> None:
        """``--user <username>`` or ``--user-id <id>``, one of them: each says how it is read.

        ``what`` ends the help text, e.g. "the user to credit".
        """
        field = username_field()
        group = parser.add_mutually_exclusive_group(required=required)
        group.add_argument(
            "--user",
            metavar="USERNAME",
            help=f"The user's username (the user model's USERNAME_FIELD, {field!r}): {what}.",
        )
        group.add_argument(
            "--user-id", type=int, metavar="ID", help=f"The user's id (primary key): {what}."
        )

    def get_user(self, options: dict[str, Any]) -> Any:
        """The user named by ``--user`` or ``--user-id``; None if neither was given.

        A CommandError when no such user exists.
        """
        if options.get("user") is not None:
            user = user_get(username=options["user"])
            if user is None:
                raise CommandError(f"No user with {username_field()} {options['user'].strip()!r}.")
            return user
        if options.get("user_id") is not None:
            user = user_get(user_id=options["user_id"])
            if user is None:
                raise CommandError(f"No user with id {options['user_id']}.")
            return user
        return None


def resolve_user_ids(
    values: Iterable[str], *, by_id: bool = False, chunk_size: int = 2000
) -> Iterator[int | str]:
    """Map usernames (``USERNAME_FIELD`` values), or ids with ``by_id``, to user ids,
    ``chunk_size`` at a time (one query per chunk).

    Yields the id of each known user, and the original text of each unknown one (a ``str``),
    so the caller can report it. Blank lines and ``#`` comments are skipped.
    """
    User = get_user_model()
    field = "pk" if by_id else username_field()
    chunk: list[str] = []

    def flush(items: list[str]) -> Iterator[int | str]:
        if by_id:
            wanted: list[Any] = [int(v) for v in items if v.isdigit()]
        else:
            wanted = items
        found = dict(
            User._default_manager.filter(**{f"{field}__in": wanted}).values_list(field, "pk")
        )
        for v in items:
            key: Any = int(v) if by_id and v.isdigit() else v
            yield found.get(key, v)

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


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str) -> datetime:
    """An ISO 8601 moment with a time zone, for ``--expires-at``; CommandError otherwise."""
    value = parse_datetime(text.strip())
    if value is None or value.tzinfo is None:
        raise CommandError(
            f"--expires-at {text!r} is not an ISO 8601 moment with a time zone, "
            "e.g. 2027-01-31T00:00:00Z."
        )
    return value


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds, for ``--expires-in``."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise CommandError(
            f"--expires-in {text!r} must be a positive duration such as 7d, 12h, 30m or 3600."
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])

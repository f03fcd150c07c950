"""The SQL of a post: lock and move the balance row, append the entry, in one transaction.

Every write locks the user's balance row first (one conditional ``UPDATE … RETURNING`` or upsert,
or the ledger's debit function), then inserts the entry with the new ``balance_after``: for the
common post both are one statement (a data-modifying CTE), one round trip in autocommit. The row lock
serialises writers per (ledger, user); the ``CHECK (balance >= 0)`` and the unique indexes are
the database's own guard behind the Python checks. Database refusals are mapped to domain errors
by :func:`translate_db_error`.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    ProgrammingError,
    connections,
    models,
    transaction,
)

from core_ledger.conf import app_settings
from core_ledger.exceptions import (
    AlreadyClaimed,
    AlreadyReversed,
    InsufficientCredits,
    LedgerBusy,
    LedgerError,
    ValidationFailed,
)
from core_ledger.ledger import BalanceT, EntryT, Ledger
from core_ledger.services import lots
from core_ledger.services.lots import Move

logger = logging.getLogger(__name__)


def tables(ledger: Ledger[EntryT, BalanceT, Any]) -> tuple[str, str]:
    """The ledger's entry and balance tables, quoted for SQL."""
    return _quoted_tables(ledger.entry_model, ledger.balance_model)


def quote_name(name: str) -> str:
    """A PostgreSQL identifier, quoted (the project runs on PostgreSQL only)."""
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _quoted_tables(
    entry_model: type[models.Model], balance_model: type[models.Model]
) -> tuple[str, str]:
    return quote_name(entry_model._meta.db_table), quote_name(balance_model._meta.db_table)


def _prepared_cursor_class() -> Any:
    """psycopg 3's server-side-binding cursor, made to run every statement as a prepared one."""
    try:
        from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
            ServerBindingCursor,  # pyright: ignore[reportAttributeAccessIssue]  # psycopg 3 only, not in the stubs
        )
    except ImportError:  # psycopg2, or no PostgreSQL backend
        return None

    class PreparedCursor(ServerBindingCursor):  # type: ignore[misc]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare", True)
            return super().execute(query, params, **kwargs)

    return PreparedCursor


_PreparedCursor = _prepared_cursor_class()
_BINARY = 1  # psycopg.pq.Format.BINARY (psycopg is optional here: see above)


def statement_cursor(alias: str, *, binary: bool = False) -> Any:
    """A cursor for the post's two statements that the server keeps prepared per connection.

    They are the same two statements on every post; parsing and planning them once per
    connection instead of once per post saves ~0.2 ms of database CPU per post (bench/README).
    Django's wrapper stays around it (error translation, query logging, execute wrappers).
    Django itself turns prepared statements off (``prepare_threshold=None``) for poolers such as
    PgBouncer in transaction mode before 1.21: ``SHARED_LEDGER_PREPARED_STATEMENTS = False``
    gives the plain cursor back.

    ``binary`` asks for the rows in binary format, decoded by psycopg's C loaders: Django's
    ``timestamptz`` loader is Python code that parses the text (about 6 µs of a post's client
    CPU). Only for rows of integers, dates and ``timestamptz`` (a binary ``jsonb`` would come
    back decoded, unlike Django's text one), and only where the time zone matches Django's: with
    ``USE_TZ`` Django keeps the session in UTC, and both loaders give ``timezone.utc``.
    """
    db = connections[alias]  # the wrapper itself: each proxy attribute is a look-up
    if (
        _PreparedCursor is None
        or db.vendor != "postgresql"
        or not app_settings.PREPARED_STATEMENTS
        # Query logging (DEBUG, assertNumQueries) reads the statement from the cursor, which
        # psycopg leaves empty for a prepared execution: log the plain way instead.
        or db.queries_logged
    ):
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django sets None, which turns even an explicit prepare=True off. A threshold nothing
        # reaches keeps automatic preparation off for every other statement (Django's own
        # cursors bind client-side and never prepare anyway) and lets ours through.
        raw.prepare_threshold = sys.maxsize
    with db.wrap_database_errors:
        cursor = _PreparedCursor(raw)
        if binary and settings.USE_TZ:
            cursor.format = _BINARY
        return db._prepare_cursor(cursor)  # type: ignore[attr-defined]


def write(
    *,
    ledger: Ledger[EntryT, Any, Any],
    user_id: int,
    operation: str,
    amount: int,
    actor_id: int | None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
    reverses_id: int | None = None,
    expires_at: datetime | None = None,
    forced_moves: list[Move] | None = None,
) -> EntryT:
    """Move the balance and append the entry in one transaction.

    A post from a caller is one statement (one round trip in autocommit): a conditional
    ``UPDATE … RETURNING`` (or upsert) of the balance row that only succeeds when no lot is
    involved, and the entry ``INSERT`` fed by it, in one data-modifying CTE. A debit that
    ``UPDATE`` did not move (a user holding lots, too few credits, something expired) is one
    more statement, the ledger's debit function (:func:`lots.debit_function_sql`). An
    expiring credit, a user with expired lots or holds, or a reversal that gives credits back
    to lots takes the lot-aware path (:mod:`core_ledger.services.lots`).
    """
    entry_table, balance_table = tables(ledger)
    user_table, user_pk = _user_table()
    alias = ledger.db_alias
    metadata_json = json.dumps(dict(metadata), allow_nan=False) if metadata else "{}"
    entry_params = [
        user_id,
        operation,
        amount,
        idempotency_key,
        fingerprint,
        description,
        metadata_json,
        reverses_id,
        actor_id,
    ]
    lot_moves: Any = None
    row = None
    # Taking back credits that never expire (reversing such a credit) is a plain debit for a
    # user without lots; with lots, the slow path takes them from the lots that expire last.
    take_back = amount < 0 and forced_moves == [(None, amount)]
    if expires_at is None and (forced_moves is None or take_back):
        # The common post, one statement: move the balance row (a conditional UPDATE, or an
        # upsert for a credit), then append the entry with the new balance_after. The entry's
        # time is read once the row lock is held, so an entry never predates one it waited for.
        insert_entry = (
            f"INSERT INTO {entry_table} (user_id, operation, amount, idempotency_key, "
            "request_fingerprint, description, metadata, reverses_id, created_by_id, "
            "balance_after, created_at, day) SELECT %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, "
            "s.balance, s.ts, (s.ts AT TIME ZONE 'UTC')::date "
            "FROM (SELECT balance, clock_timestamp() AS ts FROM moved) s "
            "RETURNING id, balance_after, created_at, day"
        )
        if amount > 0:
            # The user must exist now: the foreign keys are deferred, so a missing user would
            # only fail at commit (in a caller's transaction, at the caller's commit). A user
            # with expired lots gets them written down first (the lot-aware path).
            statement = (
                f"WITH moved AS (INSERT INTO {balance_table} AS b (user_id, balance, updated_at) "
                "SELECT %s, %s, clock_timestamp() "
                f"WHERE EXISTS (SELECT 1 FROM {user_table} WHERE {user_pk} = %s) "
                "ON CONFLICT (user_id) DO UPDATE "
                "SET balance = b.balance + EXCLUDED.balance, updated_at = EXCLUDED.updated_at "
                "WHERE b.next_expiry IS NULL OR b.next_expiry > EXCLUDED.updated_at "
                "RETURNING b.balance) " + insert_entry
            )
            params = [user_id, amount, user_id, *entry_params]
            row = _one_statement(alias, statement, params, binary=True)
        else:
            # A user without lots (their credits never expire, nothing to draw) and without an
            # expired hold to write down: the conditional UPDATE moves the row, what no pending
            # hold reserves (taking back credits that never expire too: a reversal of such a
            # credit). Anyone else, when it moved nothing: the ledger's debit function, one
            # more statement, locks the row, draws from the lots and appends the entry, or
            # says why it cannot. (Calling it from this statement, behind a one-time filter,
            # cost every plain post about 8% of its throughput from 4 and 16 processes.)
            statement = (
                f"WITH moved AS ({_plain_debit(balance_table)} RETURNING balance) " + insert_entry
            )
            row = _one_statement(
                alias, statement, [amount, user_id, amount, *entry_params], binary=True
            )
            if row is None and not take_back:
                drawn = _debit(
                    alias,
                    f"SELECT * FROM {lots.debit_function_name(ledger)}"
                    "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                    # User, credits to draw, then the entry's operation and the rest.
                    [user_id, -amount, entry_params[1], *entry_params[3:]],
                )
                if drawn is not None:
                    # Django reads jsonb as text (its JSONField decodes it).
                    row = drawn[:4]
                    lot_moves = None if drawn[4] is None else json.loads(drawn[4])
    if row is not None:
        entry_id, balance_after, created_at, day = row
    else:
        with transaction.atomic(using=alias), statement_cursor(alias) as cursor:
            written = lots.write_with_lots(
                cursor,
                ledger,
                user_id=user_id,
                amount=amount,
                expires_at=expires_at,
                forced_moves=forced_moves,
                entry_params=entry_params,
                ensure_user=(
                    f"INSERT INTO {balance_table} (user_id, balance, updated_at) "
                    "SELECT %s, 0, clock_timestamp() "
                    f"WHERE EXISTS (SELECT 1 FROM {user_table} WHERE {user_pk} = %s) "
                    "ON CONFLICT (user_id) DO NOTHING"
                ),
            )
            entry_id, balance_after = written.id, written.balance_after
            created_at, day, lot_moves = written.created_at, written.day, written.lot_moves
    return entry_instance(
        ledger,
        using=alias,
        id=entry_id,
        user_id=user_id,
        operation=operation,
        amount=amount,
        balance_after=balance_after,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        description=description,
        metadata=json.loads(metadata_json) if metadata else {},
        reverses_id=reverses_id,
        created_by_id=actor_id,
        created_at=created_at,
        day=day,
        expires_at=expires_at,
        lot_moves=lot_moves,
    )


def _plain_debit(balance_table: str) -> str:
    """The conditional ``UPDATE`` of a debit by a user without lots and without an expired
    hold: what no pending hold reserves. Parameters: amount (signed), user, amount."""
    return (
        f"UPDATE {balance_table} SET balance = balance + %s, updated_at = clock_timestamp() "
        "WHERE user_id = %s AND balance - held + %s >= 0 AND lot_credits = 0 "
        "AND (next_hold_expiry IS NULL OR next_hold_expiry > clock_timestamp())"
    )


def _one_statement(alias: str, statement: str, params: list[Any], *, binary: bool = False) -> Any:
    """Run one statement of a post and fetch its row (None when it returned none)."""
    if connections[alias].in_atomic_block:
        # One statement of the caller's transaction, behind a savepoint so that a refusal
        # leaves the caller's transaction usable (a replay look-up follows a key clash).
        with (
            transaction.atomic(using=alias),
            statement_cursor(alias, binary=binary) as cursor,
        ):
            cursor.execute(statement, params)
            return cursor.fetchone()
    # Autocommit: the statement is its own transaction, one round trip in all, and the hot
    # row's lock is held for that statement and its commit only.
    with statement_cursor(alias, binary=binary) as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


_warned_missing: set[str] = set()


def _debit(alias: str, statement: str, params: list[Any]) -> tuple[Any, ...] | None:
    """Run the debit statement: the entry's (id, balance_after, created_at, day, lot_moves), or
    None when the slow path must decide (expired lots or holds to write down, no balance row).
    Raises InsufficientCredits when the credits no hold reserves are too few."""
    try:
        row = _one_statement(alias, statement, params)
    except ProgrammingError as exc:
        if _sqlstate(exc) != "42883":  # undefined_function
            raise
        # ``migrate`` creates the ledger's debit function (core_ledger.signals); until it has
        # run, every debit takes the slow path, which needs none.
        if alias not in _warned_missing:
            _warned_missing.add(alias)
            logger.warning("Ledger debit function missing on %r: run manage.py migrate.", alias)
        return None
    if row is None:
        return None  # no balance row: the slow path tells a missing user from a poor one
    status = row[0]
    if status == lots.DRAWN:
        return tuple(row[1:6])
    if status == "short":
        need = params[1]
        raise InsufficientCredits(
            f"The balance is too low for a debit of {need}.", requested=need, balance=row[6]
        )
    return None  # "sweep": expired lots or holds are written down first


@functools.cache
def _user_table() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    meta = get_user_model()._meta
    return quote_name(meta.db_table), quote_name(meta.pk.column)


@functools.cache
def _attnames(model: type[Any]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def entry_instance(
    ledger: Ledger[EntryT, Any, Any], *, using: str | None = None, **values: Any
) -> EntryT:
    """The entry just written, as a saved model instance (no query to read it back).

    ``using`` is the database it was written to (default: the ledger's ``db_alias``, which asks
    the routers again)."""
    # Positional values in field order: Model.__init__'s fast path (as when loading a row).
    model = ledger.entry_model
    values.setdefault("hold_id", None)  # only a capture names a hold
    entry = model(*[values[name] for name in _attnames(model)])
    entry._state.adding = False
    entry._state.db = using or ledger.db_alias
    # A new entry has not been reversed: say so, or reading ``entry.reversed_by`` (the API's
    # output does) costs a query per post to learn it.
    reversed_by: Any = entry._meta.get_field("reversed_by")
    reversed_by.set_cached_value(entry, None)
    return entry


def _constraint_name(exc: BaseException) -> str:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    return (getattr(diag, "constraint_name", None) or "") if diag is not None else ""


def _sqlstate(exc: BaseException) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


def is_unique_violation(exc: BaseException) -> bool:
    """A unique index refused the write (``unique_violation``)."""
    return isinstance(exc, IntegrityError) and _sqlstate(exc) == "23505"


def translate_db_error(exc: DatabaseError, *, operation: str) -> LedgerError:
    """Map a database refusal to the domain error it means; re-raise what we do not know."""
    constraint = _constraint_name(exc)
    state = _sqlstate(exc)
    if isinstance(exc, IntegrityError):
        if constraint.endswith("_signup_once") or constraint.endswith("_daily_once"):
            what = (
                "today's daily reward"
                if constraint.endswith("_daily_once")
                else "the signup credit"
            )
            return AlreadyClaimed(f"This user has already received {what}.", operation=operation)
        if constraint.endswith("_reverses_id_key") or "reverses" in constraint:
            return AlreadyReversed()
        if constraint.endswith("_nonneg") or constraint.endswith("_held_within_balance"):
            return InsufficientCredits()
        if state == "23503":  # foreign_key_violation: the user does not exist
            return ValidationFailed("No such user.", user=["No such user."])
    if state in ("55P03", "57014"):  # lock_not_available, query_canceled (statement timeout)
        return LedgerBusy()
    if state == "22003":  # numeric_value_out_of_range
        return ValidationFailed("The balance would exceed the largest value a ledger holds.")
    raise exc


def bigint_array(ids: list[int]) -> str:
    """``ids`` as one PostgreSQL array literal, for a ``%s::bigint[]`` parameter.

    Django binds parameters client-side, and psycopg dumps a Python list element by element
    (4 ms for 2,000 ids, twice per statement: 16 ms of a 2,000-user batch); one string is one
    parameter. ``int()`` keeps it a list of integers whatever the caller passed.
    """
    return "{" + ",".join(str(int(i)) for i in ids) + "}"

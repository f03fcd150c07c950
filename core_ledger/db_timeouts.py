"""Statement and lock timeouts for a database session, set where they belong.

Requests get short ones (:class:`core_ledger.middleware.RequestTimeoutsMiddleware`): a hot row
must never hang a request, and a wait beyond them gives a clean 503. Commands set their own
(``LedgerCommand.statement_timeout_ms``): none for ``migrate``, long ones for ``ledger_verify``
and ``ledger_export``. The connection's own options (e.g. ``?options=`` in ``DATABASE_URL``)
are left as they are; these are session settings on top of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import pq

from core_ledger.conf import app_settings

_MARK = "_core_ledger_timeouts"
Timeouts = tuple[int | None, int | None]


def ledger_alias() -> str:
    """The database alias the ledger works on."""
    return app_settings.DATABASE or DEFAULT_DB_ALIAS


def _statement(wanted: Timeouts) -> tuple[str, list[str]] | None:
    """``SELECT set_config(...)`` for the timeouts that are not None (one round trip)."""
    params: list[str] = []
    for name, value in zip(("statement_timeout", "lock_timeout"), wanted, strict=True):
        if value is not None:
            params += [name, f"{int(value)}ms"]
    if not params:
        return None
    return "SELECT " + ", ".join(["set_config(%s, %s, false)"] * (len(params) // 2)), params


def _has(connection: BaseDatabaseWrapper, wanted: Timeouts) -> bool:
    mark = getattr(connection, _MARK, None)
    return mark is not None and mark[0] is connection.connection and mark[1] == wanted


# Transaction control must run as is: before "ROLLBACK TO SAVEPOINT" in a failed transaction,
# any other statement would fail itself.
_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "BEGIN", "START")


def _can_set(connection: BaseDatabaseWrapper, sql: Any) -> bool:
    if isinstance(sql, str) and sql.lstrip()[:9].upper().startswith(_CONTROL):
        return False
    raw = connection.connection
    return raw is not None and raw.info.transaction_status != pq.TransactionStatus.INERROR


def _remember(connection: BaseDatabaseWrapper, wanted: Timeouts) -> None:
    # Only outside a transaction is the setting for good: a rolled-back transaction reverts it.
    if not connection.in_atomic_block:
        setattr(connection, _MARK, (connection.connection, wanted))


def timeouts_apply(
    *, statement_ms: int | None, lock_ms: int | None, using: str | None = None
) -> None:
    """Set ``statement_timeout`` and ``lock_timeout`` (milliseconds, 0 = none, None = leave)
    for the session of ``using`` now (commands)."""
    connection = connections[using or ledger_alias()]
    wanted = (statement_ms, lock_ms)
    statement = _statement(wanted)
    if statement is None or (connection.connection is not None and _has(connection, wanted)):
        return
    with connection.cursor() as cursor:
        cursor.execute(*statement)
    _remember(connection, wanted)


def timeouts_wrapper(
    connection: BaseDatabaseWrapper, *, statement_ms: int | None, lock_ms: int | None
) -> Callable[..., Any]:
    """An ``execute_wrapper`` that sets the timeouts before the first statement that needs
    them: a request that never queries opens no connection, a persistent session that has them
    costs nothing, and a database that is down fails in the view (503), not here."""
    wanted = (statement_ms, lock_ms)
    statement = _statement(wanted)

    def wrapper(
        execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        if statement is not None and not _has(connection, wanted) and _can_set(connection, sql):
            context["cursor"].cursor.execute(*statement)  # the driver's cursor: not logged
            _remember(connection, wanted)
        return execute(sql, params, many, context)

    return wrapper

"""Read replicas: a database router that sends lag-tolerant reads to a healthy replica.

Only reads that a little lag cannot hurt go to a replica, and only inside :func:`lag_tolerant`
(the staff balances list, another user's or everyone's entry list, exports, the admin's lists).
Everything else (the caller's own balance right after a post, idempotent replays, every write
and every read a write depends on) stays on the primary: outside that scope the router has no
opinion and Django uses ``default``.

A replica is used only while it answers and its replay lag is within
``SHARED_LEDGER_REPLICA_MAX_LAG_SECONDS``; its state is checked at most once per
``SHARED_LEDGER_REPLICA_CHECK_SECONDS`` per process. A replica that is down, lagging, or fails in
the middle of a read is skipped: the read runs again on the primary, never a 5xx.

Install with ``DATABASE_ROUTERS = ["core_ledger.routing.ReplicaRouter"]`` and list the replica
aliases in ``SHARED_LEDGER_READ_REPLICAS`` (the project's settings do both from
``DATABASE_REPLICA_URLS``).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.models import Model

from core_ledger.conf import app_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The replica alias the current lag-tolerant read runs on (None: the primary).
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "core_ledger_replica", default=None
)

# Lag as the replica sees it: 0 when it has replayed all it received and its WAL receiver runs,
# else the age of the last transaction it replayed (an idle primary sends nothing, which is not
# lag). A role without pg_read_all_stats sees the receiver's row with a NULL status: taken as
# streaming (grant pg_read_all_stats to the app's role to have a stalled receiver seen too).
LAG_SQL = (
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() "
    "AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver "
    "WHERE coalesce(status, 'streaming') = 'streaming') THEN 0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 1e9) END"
)


@dataclass
class _State:
    checked_at: float
    usable: bool
    reason: str


_states: dict[str, _State] = {}
_lock = threading.Lock()
_turn = itertools.count()


def _fallback(alias: str, reason: str) -> None:
    from core_ledger import metrics

    metrics.REPLICA_FALLBACKS.labels(alias=alias, reason=reason).inc()


def _probe(alias: str) -> _State:
    """Ask the replica whether it is a standby and how far behind it is."""
    now = time.monotonic()
    connection = connections[alias]
    try:
        connection.ensure_connection()
        # The driver's own cursor: a probe is not the request's read (nor in its log line).
        with connection.connection.cursor() as cursor:
            cursor.execute(LAG_SQL)
            in_recovery, lag = cursor.fetchone()
    except (DatabaseError, psycopg.Error):
        connections[alias].close()
        logger.warning("Replica %s does not answer: reads go to the primary", alias)
        return _State(now, False, "down")
    if not in_recovery:
        # Promoted, or misconfigured: a primary of its own would diverge from ours.
        logger.warning("Replica %s is not in recovery: reads go to the primary", alias)
        return _State(now, False, "not_standby")
    if float(lag) > app_settings.REPLICA_MAX_LAG_SECONDS:
        logger.warning("Replica %s lags %.1fs: reads go to the primary", alias, float(lag))
        return _State(now, False, "lagging")
    return _State(now, True, "ok")


def replica_usable(alias: str) -> bool:
    """Whether reads may go to ``alias`` now (cached for ``REPLICA_CHECK_SECONDS``)."""
    with _lock:
        state = _states.get(alias)
    if state is None or time.monotonic() - state.checked_at >= app_settings.REPLICA_CHECK_SECONDS:
        state = _probe(alias)
        with _lock:
            _states[alias] = state
    if not state.usable:
        _fallback(alias, state.reason)
    return state.usable


def record_state(alias: str, *, usable: bool, reason: str) -> None:
    """Take ``alias`` as usable or not until its next check."""
    with _lock:
        _states[alias] = _State(time.monotonic(), usable, reason)


def state_of(alias: str) -> tuple[bool, str] | None:
    """Whether ``alias`` was usable at its last check, and why (None: never checked)."""
    with _lock:
        state = _states.get(alias)
    return None if state is None else (state.usable, state.reason)


def mark_down(alias: str) -> None:
    """Skip ``alias`` until its next check (a read on it just failed)."""
    record_state(alias, usable=False, reason="error")
    connections[alias].close()


def forget_states() -> None:
    """Check every replica afresh on its next use (tests)."""
    with _lock:
        _states.clear()


def choose_replica() -> str | None:
    """A usable replica alias (round robin over the configured ones), or None: the primary."""
    aliases = app_settings.READ_REPLICAS
    if not aliases:
        return None
    start = next(_turn)
    for i in range(len(aliases)):
        alias = aliases[(start + i) % len(aliases)]
        if replica_usable(alias):
            return alias
    return None


def current_replica() -> str | None:
    """The replica the current lag-tolerant read runs on, if any."""
    return _current.get()


@contextmanager
def reading_from(alias: str | None) -> Generator[None]:
    """Route the block's reads to ``alias`` (None: the primary), unchecked."""
    token = _current.set(alias)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def replica_scope() -> Generator[str | None]:
    """Run the block's reads on a usable replica (or the primary if none): for reads that cannot
    simply run again, like an export that streams rows as it goes. Yields the alias used."""
    alias = choose_replica()
    with reading_from(alias):
        yield alias


def lag_tolerant(read: Callable[[], T]) -> T:
    """Run ``read`` (a read-only function) on a usable replica, else on the primary.

    A replica that fails during ``read`` (connection lost, shut down, recovery conflict) is
    marked down and ``read`` runs again on the primary, so the caller never sees the failure.
    """
    alias = choose_replica()
    if alias is None:
        return read()
    try:
        with reading_from(alias):
            return read()
    except (OperationalError, InterfaceError):
        logger.warning("A read on replica %s failed: retried on the primary", alias, exc_info=True)
        mark_down(alias)
        _fallback(alias, "error")
        with reading_from(None):
            return read()


class ReplicaRouter:
    """Reads inside :func:`lag_tolerant` go to its replica; everything else is left to Django
    (``default``). Replicas never take writes or migrations."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return _current.get()

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # A replica holds the same rows as the primary: objects read from either may relate.
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db in app_settings.READ_REPLICAS else None

"""Change events written by PostgreSQL itself, in the transaction of the change (an outbox).

Every ledger's entry table carries an ``AFTER INSERT … FOR EACH STATEMENT`` trigger with a
transition table (``REFERENCING NEW TABLE``), declared once on
:class:`~core_ledger.models.AbstractLedgerEntry` (like the append-only trigger) and migrated with
each app by ``pgtrigger``. Whatever writes an entry (a post, a reversal, a signup credit, an
``EXPIRY``, a bulk grant of 100,000 rows, one-statement posts, raw SQL), the trigger writes its
``entry.posted`` events with one ``INSERT … SELECT`` over the statement's new rows: there is no
event for a rolled-back change and no change without its event, and the Python write paths do
not know events exist.

The SQL building blocks live in the database, created by ``core_ledger`` migration
``0002_events`` (see :data:`FUNCTIONS_SQL`):

- ``core_ledger_available(balance, expired, held DEFAULT 0)``: what can be spent (the
  ``available`` an event carries; holds pass their ``held`` term);
- ``core_ledger_emit(ledger, type, object_id, created_at, row)``: one event from a row's JSON,
  for row-level triggers (e.g. holds changing state one at a time).

:class:`LedgerEvents` is the generic statement-level trigger; the entry trigger is one instance
of it, and a hold table can get ``hold.placed`` / ``hold.captured`` / … the same way.
"""

from __future__ import annotations

from typing import Any

import pgtrigger
from pgtrigger import compiler

EVENT_TABLE = "core_ledger_event"

ENTRY_POSTED = "entry.posted"
HOLD_PLACED = "hold.placed"
HOLD_CAPTURED = "hold.captured"
HOLD_RELEASED = "hold.released"
HOLD_EXPIRED = "hold.expired"
HOLD_RESOLUTIONS = {"captured": HOLD_CAPTURED, "released": HOLD_RELEASED, "expired": HOLD_EXPIRED}
HOLD_EVENTS: tuple[str, ...] = (HOLD_PLACED, HOLD_CAPTURED, HOLD_RELEASED, HOLD_EXPIRED)
EVENT_TYPES: tuple[str, ...] = (ENTRY_POSTED, *HOLD_EVENTS)
"""Every event type the feed and the webhooks know."""

FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION core_ledger_available(balance bigint, expired bigint, held bigint DEFAULT 0)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- What can be spent: the balance less credits in lots past their expiry whose EXPIRY entry
    -- is not written yet, less credits reserved by pending holds. Never below 0.
    SELECT greatest(balance - coalesce(expired, 0) - coalesce(held, 0), 0)
$$;

CREATE OR REPLACE FUNCTION core_ledger_emit(
    p_ledger text, p_type text, p_object_id bigint, p_created_at timestamptz, p_row jsonb
) RETURNS bigint LANGUAGE sql VOLATILE AS $$
    -- One event, in the calling transaction: for row-level triggers. Set-based writers (the
    -- entry trigger) insert into core_ledger_event directly, one INSERT ... SELECT per statement.
    INSERT INTO core_ledger_event (xid, ledger, type, object_id, created_at, data)
    VALUES (pg_current_xact_id(), p_ledger, p_type, p_object_id, coalesce(p_created_at, now()), p_row)
    RETURNING id
$$;
"""
"""Created by ``core_ledger/migrations/0002_events.py`` (which holds a frozen copy of it)."""

DROP_FUNCTIONS_SQL = """
DROP FUNCTION IF EXISTS core_ledger_emit(text, text, bigint, timestamptz, jsonb);
DROP FUNCTION IF EXISTS core_ledger_available(bigint, bigint, bigint);
"""

TRANSITION_TABLE = "new_rows"


def events_insert_sql(
    *,
    ledger: str,
    event_type: str,
    data: str,
    where: str = "true",
    object_id: str = "n.id",
    created_at: str = "n.created_at",
    join: str = "",
) -> str:
    """One ``INSERT … SELECT`` writing an event per row ``n`` of the transition table.

    ``data`` is the SQL of the event's ``data`` (jsonb) for row ``n`` (and whatever ``join``
    joins to it, e.g. the user's balance row ``b``). Events get their ids in
    the transition table's order, which is the order the statement inserted its rows in (their
    ids' order, for an entry table).
    """
    if "'" in ledger or "'" in event_type:
        raise ValueError("ledger labels and event types never hold quotes")
    return (
        f"INSERT INTO {EVENT_TABLE} (xid, ledger, type, object_id, created_at, data) "
        f"SELECT pg_current_xact_id(), '{ledger}', '{event_type}', {object_id}, {created_at}, "
        f"{data} FROM {TRANSITION_TABLE} AS n {join}WHERE {where}; "
        "RETURN NULL;"
    )


class LedgerEvents(pgtrigger.Trigger):
    """An ``AFTER … FOR EACH STATEMENT`` trigger that records one event per changed row.

    The rows come from the statement's transition table (``REFERENCING NEW TABLE AS
    new_rows``, named ``n`` in the SQL), so a statement writing 100,000 rows writes its
    100,000 events in one ``INSERT … SELECT`` and a single post pays one small statement.
    ``data`` and ``where`` are SQL templates; ``{entry_table}``, ``{lot_table}`` and
    ``{balance_table}`` are the tables of the ledger the model's app declares, found through the ledger registry when the trigger is compiled (by
    ``makemigrations``), so each app's migration holds its own label and tables.

    A table whose rows change after they are written (holds) snapshots the row in ``data``
    (``to_jsonb(n) || jsonb_build_object('balance', …)``); append-only entries need not.
    """

    def __init__(
        self,
        *,
        name: str,
        event_type: str,
        data: str,
        where: str = "true",
        operation: Any = pgtrigger.Insert,
        created_at: str = "n.created_at",
        join: str = "",
    ) -> None:
        self.event_type = event_type
        self.data_template = data
        self.where_template = where
        self.created_at = created_at
        self.join_template = join
        super().__init__(
            name=name,
            level=pgtrigger.Statement,
            when=pgtrigger.After,
            operation=operation,
            referencing=pgtrigger.Referencing(new=TRANSITION_TABLE),  # type: ignore[no-untyped-call]
        )

    def get_func(self, model: Any) -> str:
        from core_ledger.ledger import registry

        # Migrations compile the trigger on their own copy of the model class, so the ledger is
        # found by app label: any table of a ledger app (entries, lots, holds) belongs to it.
        app_label = model._meta.app_label
        ledger = next((x for x in registry if x.app_label == app_label), None)
        if ledger is None:
            raise LookupError(f"No registered ledger in app {app_label!r} ({model._meta.label}).")
        names = {
            "entry_table": _quote(ledger.entry_model._meta.db_table),
            "lot_table": _quote(ledger.lot_model._meta.db_table),
            "balance_table": _quote(ledger.balance_model._meta.db_table),
        }
        return events_insert_sql(
            ledger=ledger.label,
            event_type=self.event_type,
            data=self.data_template.format(**names),
            where=self.where_template.format(**names),
            created_at=self.created_at,
            join=self.join_template.format(**names) + " " if self.join_template else "",
        )

    def compile(self, model: Any) -> compiler.Trigger:
        """pgtrigger's compiled trigger, installed by :class:`EventTriggerSql` (no ignore check)."""
        compiled = super().compile(model)
        kwargs = {k: v for k, v in compiled.sql.kwargs.items() if k != "ignore_func_name"}
        return compiler.Trigger(name=compiled.name, sql=EventTriggerSql(**kwargs))


class EventTriggerSql(compiler.UpsertTriggerSql):
    """pgtrigger's trigger SQL without its ``pgtrigger.ignore()`` check.

    That check reads an unset setting inside an exception block: a subtransaction on every
    statement, the largest part of what the event trigger cost a post. Events must never be
    skipped anyway, so there is nothing to ignore. Migrations name this class (it is the core's
    migration building block for the event triggers, like pgtrigger's for the others).
    """

    def get_template(self) -> str:
        return """
            CREATE OR REPLACE FUNCTION {pgid}()
            RETURNS TRIGGER AS $$
                {declare}
                BEGIN
                    {func}
                END;
            $$ LANGUAGE plpgsql;

            DROP TRIGGER IF EXISTS {pgid} ON {table};
            CREATE {constraint} TRIGGER {pgid}
                {when} {operation} ON {table}
                {timing}
                {referencing}
                FOR EACH {level} {condition}
                EXECUTE PROCEDURE {execute};

            COMMENT ON TRIGGER {pgid} ON {table} IS '{hash}';
        """


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def entry_events_trigger() -> LedgerEvents:
    """``entry.posted`` for every entry row: ``data`` is ``{"balance": {"balance", "held",
    "available"}}`` right after the entry.

    The entry itself is not copied: entries are append-only (a trigger refuses UPDATE and
    DELETE), so the feed reads the row by ``object_id`` and shows it as it was posted. Copying
    it (``to_jsonb(n)``) cost about 8 µs a row, which took a bulk grant to about 0.7x its
    speed without events (bench/README.md); the balance object costs about a tenth of that.

    ``balance`` is the entry's ``balance_after``. ``available`` is ``balance_after`` less the
    credits of the user's lots that had expired by the entry's ``created_at`` and still hold
    credits when the statement ends (no ``EXPIRY`` entry yet). Every write sweeps the user's
    expired lots under the balance row lock before it writes (the service's rule), so after a
    write that term is 0 in practice; it is not 0 only for an entry written without that sweep
    (raw SQL), or for an earlier entry of a user whose later entry in the same statement
    changed the lots (the state at the end of the statement is used). The lookup is one probe
    of the lots' open ``(user, expires_at)`` index, made only when the user's lots hold
    credits. ``held`` is the balance row's at the end of the statement (credits in pending
    holds), taken off ``available`` too.
    """
    return LedgerEvents(
        name="entry_events",
        event_type=ENTRY_POSTED,
        data=f"jsonb_build_object('balance', {_balance_object('n.balance_after', 'n.created_at')})",
        join=BALANCE_JOIN,
    )


BALANCE_JOIN = (
    "LEFT JOIN (SELECT bl.user_id, bl.balance, bl.held, bl.lot_credits FROM {balance_table} AS bl "
    f"WHERE bl.user_id = ANY (ARRAY(SELECT DISTINCT r.user_id FROM {TRANSITION_TABLE} AS r))) "
    "AS b ON b.user_id = n.user_id"
)
"""The balance rows ``b`` of the statement's users as the statement leaves it.

They are read by primary key for the distinct users of the changed rows (``= ANY(ARRAY(…))``),
then joined: one probe per user whatever the statement's size. A plain join let the planner
hash-join a sequential scan of the whole balance table for every statement of a few thousand
rows (each 2,000-user batch of a bulk grant read all 100,000 balance rows: 38 ms a batch, 1.9 s
of a 100,000-user grant); a probe per row cost a 1,000,000-row single-user statement a million
probes of the same row."""


def _balance_object(balance: str, moment: str) -> str:
    """SQL of ``{"balance", "held", "available"}`` for row ``n``'s user right after the change,
    with the balance row ``b`` joined (:data:`BALANCE_JOIN`): ``balance`` as given, ``held``
    the row's credits in pending holds, ``available`` = balance - held - credits of lots
    expired by ``moment`` and not written down yet (one probe of the lots' open index)."""
    # A user whose lots hold no credits (``lot_credits``, their sum) has none expired: no probe.
    expired = (
        "CASE WHEN b.lot_credits <> 0 THEN (SELECT sum(l.remaining)::bigint FROM {lot_table} "
        f"AS l WHERE l.user_id = n.user_id AND l.remaining > 0 AND l.expires_at <= {moment}) END"
    )
    return (
        f"jsonb_build_object('balance', {balance}, 'held', coalesce(b.held, 0), "
        f"'available', core_ledger_available({balance}, {expired}, b.held))"
    )


def hold_events_triggers() -> list[LedgerEvents]:
    """``hold.placed`` when a hold is written, and ``hold.captured`` / ``hold.released`` /
    ``hold.expired`` when it leaves pending (once: a trigger refuses any change to a resolved
    hold, so a resolved row among an UPDATE's new rows is always that one change). A
    resolution's event is dated by its ``resolved_at``.

    A hold changes after it is written, so ``data`` snapshots the row (``to_jsonb``) as it was
    then, plus the user's ``balance`` object right after the change (from the balance row).
    """
    moment = "coalesce(n.resolved_at, n.created_at)"
    data = (
        "to_jsonb(n) || jsonb_build_object('balance', "
        f"{_balance_object('coalesce(b.balance, 0)', moment)})"
    )
    return [
        LedgerEvents(
            name="hold_placed_events", event_type=HOLD_PLACED, data=data, join=BALANCE_JOIN
        ),
        *(
            LedgerEvents(
                name=f"hold_{status}_events",
                event_type=event_type,
                data=data,
                where=f"n.status = '{status}'",
                operation=pgtrigger.Update,
                created_at=moment,
                join=BALANCE_JOIN,
            )
            for status, event_type in HOLD_RESOLUTIONS.items()
        ),
    ]

"""Reads of the change events: the feed that never skips an event nor hands one out twice.

Events are written by database triggers (:mod:`core_ledger.triggers`) in the transaction of each
change. This module pages through them for ``GET /api/events/`` and for the webhook worker, and
renders an event in the API's shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, router

from core_ledger.conf import app_settings
from core_ledger.exceptions import ValidationFailed
from core_ledger.ledger import registry
from core_ledger.models import Event
from core_ledger.triggers import ENTRY_POSTED, HOLD_EVENTS

MAX_POSITION = 2**63 - 1
_CURSOR = re.compile(r"^(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})$")


@dataclass(frozen=True, order=True)
class Position:
    """A place in the feed: the ``(xid, id)`` of the last event handed out; ``(0, 0)`` is the start."""

    xid: int = 0
    id: int = 0

    def encode(self) -> str:
        """The opaque cursor a client sends back."""
        raw = f"{self.xid}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """The position a cursor made by :meth:`encode` stands for; anything else is refused."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError):
            text = ""
        match = _CURSOR.match(text)
        if match is None:
            raise ValidationFailed("Invalid cursor.", cursor=["Invalid cursor."])
        position = cls(int(match.group(1)), int(match.group(2)))
        if position.xid > MAX_POSITION or position.id > MAX_POSITION or position.encode() != cursor:
            raise ValidationFailed("Invalid cursor.", cursor=["Invalid cursor."])
        return position


@dataclass(frozen=True)
class FeedPage:
    """Events in feed order and the position to resume from (the last one, or where we were)."""

    events: list[Event]
    next_position: Position


def events_db_alias() -> str:
    """The database holding the events: the ledgers' (``SHARED_LEDGER_DATABASE``) or the routers'."""
    return app_settings.DATABASE or router.db_for_read(Event) or "default"


def event_page(
    *,
    after: Position | None = None,
    ledgers: Sequence[str] = (),
    types: Sequence[str] = (),
    limit: int = 50,
) -> FeedPage:
    """The next ``limit`` events after ``after`` (the start when None), oldest first.

    Why ``(xid, id)`` order, and why only ``xid < pg_snapshot_xmin(pg_current_snapshot())``:

    ``id`` comes from a sequence when the event is written, but the event becomes visible only
    when its transaction commits, and transactions commit in any order. Transaction A may take
    id 10, then B takes id 11 and commits first: a reader that saw 11 and resumes with
    ``id > 11`` never sees 10. So the feed hands out only events whose writing transaction has
    *ended*, and orders them so that every event that can still appear sorts after everything
    handed out:

    - ``xmin`` of the statement's snapshot is the oldest transaction id still running when the
      statement started. Every transaction with an id below it has committed or rolled back, so
      the events with ``xid < xmin`` are final: all of them are visible to this statement and
      none can be added later. (A rolled-back transaction leaves no event at all.)
    - Transaction ids are handed out in increasing order, and a transaction that has not yet
      written gets its id later, so it gets one ``>= xmin``: every event that appears after this
      statement has ``xid >= xmin``, larger than the ``xid`` of everything handed out now.
    - Within one transaction, ids order its events (they all appear at its commit, together).

    Hence the set handed out is always a prefix of the final ``(xid, id)`` order, and a cursor
    on the last ``(xid, id)`` handed out resumes exactly after it: no event is skipped and none
    is handed out twice. The price: an event waits until every transaction that was running when
    it committed has ended, so one long transaction holding an id delays the feed (not the
    writes) until it ends. ``pg_current_snapshot()`` is the statement's own snapshot, so the
    ``xmin`` test and the rows read agree. The ``(xid, id)`` index serves the scan.
    """
    position = after or Position()
    where = [
        "xid < pg_snapshot_xmin(pg_current_snapshot())",
        "(xid, id) > (%s::text::xid8, %s)",
    ]
    params: list[Any] = [str(position.xid), position.id]
    if ledgers:
        where.append("ledger = ANY(%s)")
        params.append(list(ledgers))
    if types:
        where.append("type = ANY(%s)")
        params.append(list(types))
    params.append(limit)
    sql = (
        "SELECT id, xid::text, ledger, type, object_id, created_at, data FROM core_ledger_event "
        f"WHERE {' AND '.join(where)} ORDER BY xid, id LIMIT %s"
    )
    with connections[events_db_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    events = [
        Event(
            id=row[0],
            xid=int(row[1]),
            ledger=row[2],
            type=row[3],
            object_id=row[4],
            created_at=row[5],
            # Django has psycopg hand jsonb over as text (JSONField decodes it itself).
            data=json.loads(row[6]) if isinstance(row[6], str) else row[6],
        )
        for row in rows
    ]
    last = Position(events[-1].xid, events[-1].id) if events else position
    return FeedPage(events=events, next_position=last)


def feed_head() -> Position:
    """The position after every event handed out so far (where a new webhook endpoint starts)."""
    sql = (
        "SELECT xid::text, id FROM core_ledger_event "
        "WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, id DESC LIMIT 1"
    )
    with connections[events_db_alias()].cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    return Position(int(row[0]), int(row[1])) if row else Position()


# --- rendering -----------------------------------------------------------------------------------


def _entries_data(events: Sequence[Event]) -> dict[int, dict[str, Any]]:
    """Each ``entry.posted`` event's ``data``: the entry exactly as ``GET /api/<ledger>/entries/
    <id>/`` showed it when it was posted, plus ``balance`` (what the event stored).

    Entries are append-only, so the row read now is the row posted; only ``reversed_by`` can
    have changed since, and it is shown as it was then (null: a later reversal is an event of
    its own). One query per ledger for a whole page.
    """
    from core_ledger.api.serializers import entry_representation

    wanted: dict[str, list[int]] = {}
    for event in events:
        wanted.setdefault(event.ledger, []).append(event.object_id)
    rows: dict[tuple[str, int], Any] = {}
    for label, ids in wanted.items():
        ledger = registry.get(label)
        for entry in ledger.entry_model.objects.using(ledger.db_alias).filter(pk__in=ids):
            entry._state.fields_cache["reversed_by"] = None  # no query; as it was posted
            rows[(label, entry.pk)] = entry
    data: dict[int, dict[str, Any]] = {}
    for event in events:
        entry = rows.get((event.ledger, event.object_id))
        shown: dict[str, Any] = {} if entry is None else entry_representation(event.ledger, entry)
        shown["balance"] = event.data.get("balance")
        data[event.id] = shown
    return data


def _holds_data(events: Sequence[Event]) -> dict[int, dict[str, Any]]:
    """Each hold event's ``data``: the hold as ``GET /api/<ledger>/holds/<id>/`` showed it at the
    change (the trigger's snapshot of the row, not the row now: a hold changes after it is
    placed), plus ``balance``. No query: everything is in the event."""
    from django.db import models
    from django.utils.dateparse import parse_datetime
    from rest_framework.fields import DateTimeField

    from core_ledger.api.serializers import hold_serializer_for

    moment = DateTimeField()
    data: dict[int, dict[str, Any]] = {}
    for event in events:
        snapshot = dict(event.data)
        model = registry.get(event.ledger).hold_model
        values: dict[str, Any] = {}
        for field in model._meta.concrete_fields:
            value = snapshot.get(field.column)
            if isinstance(field, models.DateTimeField) and isinstance(value, str):
                value = parse_datetime(value)
            values[field.attname] = value
        hold = model(**values)
        shown: dict[str, Any] = dict(hold_serializer_for(event.ledger)(hold).data)
        # As it was at the change, not as the clock reads it now (a pending hold expires).
        shown["status"] = hold.status
        shown["resolved_at"] = (
            None if hold.resolved_at is None else moment.to_representation(hold.resolved_at)
        )
        shown["balance"] = snapshot.get("balance")
        data[event.id] = shown
    return data


DATA_RENDERERS: dict[str, Callable[[Sequence[Event]], dict[int, dict[str, Any]]]] = {
    ENTRY_POSTED: _entries_data,
    **dict.fromkeys(HOLD_EVENTS, _holds_data),
}
"""How each event type's ``data`` is shown, a page at a time."""


def render_events(events: Sequence[Event]) -> list[dict[str, Any]]:
    """``{"id", "type", "ledger", "created_at", "data"}`` per event: the feed's items and the
    webhooks' bodies."""
    by_type: dict[str, list[Event]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    data: dict[int, dict[str, Any]] = {}
    for event_type, group in by_type.items():
        data.update(DATA_RENDERERS[event_type](group))
    return [
        {
            "id": event.id,
            "type": event.type,
            "ledger": event.ledger,
            "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": data[event.id],
        }
        for event in events
    ]


def render_event(event: Event) -> dict[str, Any]:
    """One event, rendered as :func:`render_events` does."""
    return render_events([event])[0]

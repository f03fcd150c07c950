"""Every write path writes its entry.posted events in its own transaction, through the entry
table's trigger: posts, reversals, signup credits, bulk grants, EXPIRY entries, raw SQL."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from core_ledger.exceptions import InsufficientCredits
from core_ledger.feed import render_event
from core_ledger.ledger import AnyLedger
from core_ledger.models import Event
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import ledger_check
from core_ledger.services import entry_post, entry_reverse, grant_bulk
from core_ledger.services.lots import lots_expire
from core_ledger.testing import make_user
from core_ledger.triggers import ENTRY_POSTED

pytestmark = pytest.mark.django_db


def events_of(ledger: AnyLedger, entry_id: int) -> list[Event]:
    return list(Event.objects.filter(ledger=ledger.label, type=ENTRY_POSTED, object_id=entry_id))


def test_a_post_writes_one_event_with_the_entry_and_the_balance(
    ledger: AnyLedger, user: Any
) -> None:
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=7).entry
    [event] = events_of(ledger, entry.pk)
    assert event.object_id == entry.pk
    # The entry is read from its (append-only) row; the event keeps the balance after it.
    assert event.data == {
        "balance": {"balance": entry.balance_after, "held": 0, "available": entry.balance_after}
    }
    assert render_event(event)["data"]["amount"] == 7
    # The same transaction: the event's xid is the writer's.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text")
        assert int(cursor.fetchone()[0]) == event.xid


def test_the_event_shows_the_entry_as_the_api_does(
    ledger: AnyLedger, staff: Any, user: Any
) -> None:
    entry = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=12,
        actor=staff,
        idempotency_key="k-1",
        description="bonus",
        metadata={"campaign": "winter", "n": [1, 2]},
        expires_at=timezone.now() + timedelta(days=3),
    ).entry
    spend = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=20).entry
    client = APIClient()
    client.force_authenticate(staff)
    for posted in (entry, spend):
        [event] = events_of(ledger, posted.pk)
        shown = render_event(event)
        api = client.get(f"/api/{ledger.label}/entries/{posted.pk}/").json()
        data = dict(shown["data"])
        assert data.pop("balance") == {
            "balance": posted.balance_after,
            "held": 0,
            "available": posted.balance_after,
        }
        assert data == api
        assert shown["type"] == "entry.posted" and shown["ledger"] == ledger.label
        assert shown["id"] == event.id


def test_a_refused_or_rolled_back_write_leaves_no_event(ledger: AnyLedger, user: Any) -> None:
    before = Event.objects.count()
    with pytest.raises(InsufficientCredits):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=10**9)
    with pytest.raises(RuntimeError), transaction.atomic():
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5)
        assert Event.objects.count() == before + 1
        raise RuntimeError("roll back")
    assert Event.objects.count() == before


def test_signup_reversal_and_bulk_grant_write_events(ledger: AnyLedger, staff: Any) -> None:
    users = [make_user() for _ in range(5)]
    for u in users:  # the signup credit, posted when the user was created
        signup = ledger.entry_model.objects.get(user_id=u.pk, operation=Op.SIGNUP_CREDIT)
        assert len(events_of(ledger, signup.pk)) == 1
    credit = entry_post(ledger=ledger, user_id=users[0].pk, operation=Op.CREDIT_ADD, amount=9).entry
    reversal = entry_reverse(ledger=ledger, entry_id=credit.pk, reason="mistake", actor=staff)
    [event] = events_of(ledger, reversal.pk)
    assert render_event(event)["data"]["reverses"] == credit.pk
    # Shown as it was posted: the credit's own event does not show the later reversal.
    [credit_event] = events_of(ledger, credit.pk)
    assert render_event(credit_event)["data"]["reversed_by"] is None
    summary = grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[u.pk for u in users],
        amount=3,
        idempotency_key="gift",
        batch_size=2,
    )
    assert summary.granted == 5
    granted = ledger.entry_model.objects.filter(idempotency_key="gift")
    assert granted.count() == 5
    for e in granted:
        [event] = events_of(ledger, e.pk)
        assert event.data["balance"]["balance"] == e.balance_after
    assert ledger_check(ledger=ledger) == []


def test_expiry_entries_write_events_and_available_counts_expired_lots(
    ledger: AnyLedger, user: Any
) -> None:
    lot = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=30,
        expires_at=timezone.now() + timedelta(milliseconds=300),
    ).entry
    time.sleep(max(0.0, (lot.expires_at - timezone.now()).total_seconds()) + 0.05)
    # Raw SQL entry written without the service's sweep: the lot's 30 credits have expired but
    # have no EXPIRY entry yet, so available is 30 less than the balance.
    table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
    balance_table = connection.ops.quote_name(ledger.balance_model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {balance_table} SET balance = balance + 1 WHERE user_id = %s RETURNING balance",
            [user.pk],
        )
        new_balance = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {table} (user_id, operation, amount, balance_after, request_fingerprint, "
            "description, metadata, created_at, day) VALUES (%s, 'CREDIT_ADD', 1, %s, '', '', "
            "'{}', clock_timestamp(), current_date) RETURNING id",
            [user.pk, new_balance],
        )
        raw_id = cursor.fetchone()[0]
    [raw_event] = events_of(ledger, raw_id)
    assert raw_event.data["balance"] == {
        "balance": new_balance,
        "held": 0,
        "available": new_balance - 30,
    }
    summary = lots_expire(ledger=ledger)
    assert summary.lots == 1
    expiry = ledger.entry_model.objects.get(user_id=user.pk, operation=Op.EXPIRY)
    [event] = events_of(ledger, expiry.pk)
    assert render_event(event)["data"]["amount"] == -30
    assert event.data["balance"] == {
        "balance": new_balance - 30,
        "held": 0,
        "available": new_balance - 30,
    }
    assert render_event(event)["data"]["drawn_from"] == [{"entry": lot.pk, "amount": 30}]


def test_one_statement_for_many_rows_writes_events_in_entry_order(ledger: AnyLedger) -> None:
    users = [make_user() for _ in range(30)]
    grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[u.pk for u in users],
        amount=1,
        idempotency_key="order",
    )
    entries = list(
        ledger.entry_model.objects.filter(idempotency_key="order")
        .order_by("id")
        .values_list("id", flat=True)
    )
    events = list(
        Event.objects.filter(ledger=ledger.label, object_id__in=entries)
        .order_by("id")
        .values_list("object_id", flat=True)
    )
    assert events == entries


def test_the_sql_building_blocks_for_other_event_sources() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT core_ledger_available(100, 30), core_ledger_available(100, NULL), "
            "core_ledger_available(100, 30, 20), core_ledger_available(10, 30)"
        )
        assert cursor.fetchone() == (70, 100, 50, 0)


@pytest.mark.corrupts_ledger  # an event naming no entry, on purpose
def test_core_ledger_emit_writes_one_event_in_the_calling_transaction() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT core_ledger_emit('alpha', 'entry.posted', 424242, NULL, "
            """'{"balance": {"balance": 1, "available": 1}}'::jsonb), pg_current_xact_id()::text"""
        )
        event_id, xid = cursor.fetchone()
    event = Event.objects.get(pk=event_id)
    assert (event.ledger, event.type, event.object_id, event.xid) == (
        "alpha",
        "entry.posted",
        424242,
        int(xid),
    )
    assert event.data == {"balance": {"balance": 1, "available": 1}}

"""Holds write their events in the transaction of the change, through the hold table's triggers:
hold.placed, then one of hold.captured / hold.released / hold.expired, each showing the hold as
the API showed it at that moment, with the user's balance, held and available after it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from core_ledger.feed import render_event
from core_ledger.ledger import AnyLedger
from core_ledger.models import Event
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import ledger_check
from core_ledger.services import entry_post
from core_ledger.services.holds import hold_capture, hold_place, hold_release, holds_expire
from core_ledger.testing import make_user, set_balance

pytestmark = pytest.mark.django_db


def hold_events(ledger: AnyLedger, hold_id: int) -> list[Event]:
    return list(
        Event.objects.filter(
            ledger=ledger.label, type__startswith="hold.", object_id=hold_id
        ).order_by("id")
    )


def place(ledger: AnyLedger, user: Any, amount: int, **kwargs: Any) -> Any:
    return hold_place(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=amount, **kwargs
    ).hold


def test_placing_a_hold_writes_hold_placed_with_the_hold_and_what_is_left(
    ledger: AnyLedger, staff: Any
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 30, actor=staff, description="match #7", metadata={"m": 7})
    [event] = hold_events(ledger, hold.pk)
    assert event.type == "hold.placed" and event.created_at == hold.created_at
    shown = render_event(event)
    data = dict(shown["data"])
    assert data.pop("balance") == {"balance": 100, "held": 30, "available": 70}
    client = APIClient()
    client.force_authenticate(staff)
    assert data == client.get(f"/api/{ledger.label}/holds/{hold.pk}/").json()
    assert data["status"] == "pending" and data["description"] == "match #7"


def test_each_resolution_writes_its_event_once_and_shows_the_hold_as_it_was(
    ledger: AnyLedger, staff: Any
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    captured = place(ledger, user, 40, actor=staff)
    released = place(ledger, user, 10, actor=staff)
    capture = hold_capture(ledger=ledger, hold_id=captured.pk, amount=25, actor=staff).hold
    hold_release(ledger=ledger, hold_id=released.pk, actor=staff)

    placed_event, captured_event = hold_events(ledger, captured.pk)
    assert [placed_event.type, captured_event.type] == ["hold.placed", "hold.captured"]
    assert captured_event.created_at == capture.resolved_at
    shown = render_event(captured_event)["data"]
    assert (shown["status"], shown["captured_amount"], shown["entry"]) == (
        "captured",
        25,
        capture.entry_id,
    )
    # After the capture: 25 spent, the released hold's 10 still held at that moment.
    assert shown["balance"] == {"balance": 75, "held": 10, "available": 65}
    # The capture's debit entry has its own entry.posted event, with the same balance.
    assert capture.entry_id is not None
    [entry_event] = Event.objects.filter(
        ledger=ledger.label, type="entry.posted", object_id=capture.entry_id
    )
    assert entry_event.data["balance"] == {"balance": 75, "held": 10, "available": 65}
    # The placed event still shows the hold as it was placed: pending, the whole amount.
    assert render_event(placed_event)["data"]["status"] == "pending"

    placed_event, released_event = hold_events(ledger, released.pk)
    assert released_event.type == "hold.released"
    assert render_event(released_event)["data"]["balance"] == {
        "balance": 75,
        "held": 0,
        "available": 75,
    }
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_an_expired_hold_gets_hold_expired_when_it_is_written_down(
    ledger: AnyLedger, staff: Any
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=50)
    hold = place(ledger, user, 20, actor=staff, expires_in=1)
    time.sleep(1.1)  # the hold's own expiry (whole seconds) must pass: real time, no mock
    assert [e.type for e in hold_events(ledger, hold.pk)] == ["hold.placed"]  # not swept yet
    summary = holds_expire(ledger=ledger)
    assert summary.holds >= 1
    _, expired = hold_events(ledger, hold.pk)
    shown = render_event(expired)["data"]
    assert (expired.type, shown["status"]) == ("hold.expired", "expired")
    assert shown["balance"] == {"balance": 50, "held": 0, "available": 50}
    holds_expire(ledger=ledger)  # a second sweep finds nothing and writes no second event
    assert len(hold_events(ledger, hold.pk)) == 2
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_a_rolled_back_hold_leaves_no_event(ledger: AnyLedger, staff: Any) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=50)
    before = Event.objects.filter(type__startswith="hold.").count()
    with pytest.raises(RuntimeError), transaction.atomic():
        place(ledger, user, 5, actor=staff)
        raise RuntimeError("roll back")
    assert Event.objects.filter(type__startswith="hold.").count() == before


@pytest.mark.corrupts_ledger
def test_ledger_check_catches_a_hold_without_its_event(ledger: AnyLedger, staff: Any) -> None:
    from django.db import connection

    user = make_user()
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=9)
    hold = place(ledger, user, 4, actor=staff)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM core_ledger_event WHERE type = 'hold.placed' AND object_id = %s",
            [hold.pk],
        )
    kinds = {d.kind for d in ledger_check(ledger=ledger, user_ids=[user.pk])}
    assert "hold_event_missing" in kinds

"""Holds: placing, capturing, releasing and expiring them, with and without expiring credits;
what a hold does to balance/held/available and to every other debit; the database's guards."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from core_ledger.exceptions import (
    HoldNotFound,
    HoldNotPending,
    IdempotencyKeyReused,
    InsufficientCredits,
    OperationNotAllowed,
    ValidationFailed,
)
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, balance_snapshot, hold_list, ledger_check
from core_ledger.services import (
    entry_post,
    entry_reverse,
    hold_capture,
    hold_place,
    hold_release,
    holds_expire,
)
from core_ledger.testing import make_user, set_balance

pytestmark = pytest.mark.django_db


def place(ledger: AnyLedger, user: Any, amount: int, **kwargs: Any) -> Any:
    kwargs.setdefault("actor", user)
    return hold_place(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=amount, **kwargs
    ).hold


def spend(ledger: AnyLedger, user: Any, amount: int) -> Any:
    return entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=amount, actor=user
    ).entry


def snap(ledger: AnyLedger, user: Any) -> tuple[int, int, int]:
    s = balance_snapshot(ledger=ledger, user_id=user.pk)
    return s.balance, s.held, s.available


def wait_past(moment: Any) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.05)


def lot_credit(ledger: AnyLedger, user: Any, amount: int, lasts: timedelta) -> Any:
    return entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=amount,
        expires_at=timezone.now() + lasts,
    ).entry


# --- placing --------------------------------------------------------------------------------------


def test_a_hold_reserves_credits_without_an_entry(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    entries = ledger.entry_model.objects.count()
    hold = place(ledger, user, 30, description="match 7", metadata={"match": 7})
    assert hold.status == "pending" and hold.amount == 30 and hold.created_by_id == user.pk
    assert hold.operation == Op.CREDIT_SPEND and hold.metadata == {"match": 7}
    assert timedelta(minutes=14) < hold.expires_at - hold.created_at <= timedelta(minutes=15)
    assert ledger.entry_model.objects.count() == entries
    assert snap(ledger, user) == (100, 30, 70)
    assert ledger.hold_model.objects.get(pk=hold.pk).description == "match 7"


def test_a_hold_beyond_available_is_insufficient_credits(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    place(ledger, user, 40)
    with pytest.raises(InsufficientCredits) as exc:
        place(ledger, user, 11)
    assert exc.value.details["available"] == 10
    place(ledger, user, 10)
    assert snap(ledger, user) == (50, 50, 0)
    assert ledger.hold_model.objects.filter(user=user).count() == 2


def test_every_debit_checks_available_not_balance(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=20).entry
    place(ledger, user, 90)
    with pytest.raises(InsufficientCredits):
        spend(ledger, user, 31)
    spend(ledger, user, 30)  # 120 - 90 = 30 available
    with pytest.raises(InsufficientCredits):
        entry_reverse(ledger=ledger, entry_id=credit.pk, reason="takes back 20 of 0 available")
    assert snap(ledger, user) == (90, 90, 0)


def test_who_may_place_a_hold(ledger: AnyLedger, user: Any, other_user: Any, staff: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    with pytest.raises(OperationNotAllowed):
        place(ledger, user, 5, actor=other_user)  # someone else's account
    with pytest.raises(OperationNotAllowed):
        hold_place(ledger=ledger, user_id=user.pk, operation=Op.EXPIRY, amount=5, actor=staff)
    with pytest.raises(ValidationFailed):  # a credit cannot be held
        hold_place(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5, actor=staff)
    assert place(ledger, user, 5, actor=staff).created_by_id == staff.pk
    assert place(ledger, user, 5, actor=None).created_by_id is None  # the system


@pytest.mark.parametrize("expires_in", [0, 7 * 86400 + 1, -5, 1.5, True])
def test_expires_in_is_one_second_to_seven_days(
    ledger: AnyLedger, user: Any, expires_in: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    with pytest.raises(ValidationFailed) as exc:
        place(ledger, user, 5, expires_in=expires_in)
    assert "expires_in" in exc.value.details
    assert not ledger.hold_model.objects.exists()


@pytest.mark.parametrize("amount", [0, -1, None, 2.5])
def test_bad_amounts_are_refused(ledger: AnyLedger, user: Any, amount: Any) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    with pytest.raises(ValidationFailed):
        place(ledger, user, amount)
    assert not ledger.hold_model.objects.exists()


def test_unknown_user_is_a_validation_error(ledger: AnyLedger, staff: Any) -> None:
    with pytest.raises(ValidationFailed):
        hold_place(ledger=ledger, user_id=987654, operation=Op.CREDIT_SPEND, amount=1, actor=staff)


def test_the_default_lifetime_comes_from_settings(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    with override_settings(SHARED_LEDGER_HOLD_EXPIRES_IN=60):
        hold = place(ledger, user, 5)
    assert timedelta(seconds=59) < hold.expires_at - hold.created_at <= timedelta(seconds=60)
    hold = place(ledger, user, 5, expires_in=3600)
    assert timedelta(seconds=3599) < hold.expires_at - hold.created_at <= timedelta(hours=1)


# --- idempotency ----------------------------------------------------------------------------------


def test_a_repeated_key_replays_and_another_request_is_refused(
    ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    first = hold_place(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=10,
        actor=user,
        idempotency_key="k1",
    )
    again = hold_place(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=10,
        actor=user,
        idempotency_key="k1",
    )
    assert not first.replayed and again.replayed and again.hold.pk == first.hold.pk
    with pytest.raises(IdempotencyKeyReused):
        hold_place(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=11,
            actor=user,
            idempotency_key="k1",
        )
    assert snap(ledger, user) == (100, 10, 90)


def test_capture_and_release_keys_replay(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 10)
    first = hold_capture(ledger=ledger, hold_id=hold.pk, amount=4, actor=user, idempotency_key="c")
    again = hold_capture(ledger=ledger, hold_id=hold.pk, amount=4, actor=user, idempotency_key="c")
    assert again.replayed and again.hold.entry_id == first.hold.entry_id
    with pytest.raises(IdempotencyKeyReused):
        hold_capture(ledger=ledger, hold_id=hold.pk, amount=5, actor=user, idempotency_key="c")
    with pytest.raises(IdempotencyKeyReused):
        hold_release(ledger=ledger, hold_id=hold.pk, actor=user, idempotency_key="c")
    with pytest.raises(HoldNotPending) as exc:
        hold_release(ledger=ledger, hold_id=hold.pk, actor=user, idempotency_key="other")
    assert exc.value.details == {"status": "captured"}
    assert ledger.entry_model.objects.filter(hold_id=hold.pk).count() == 1


# --- capture and release --------------------------------------------------------------------------


def test_capture_posts_one_debit_entry_naming_its_hold(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 30, description="fee", metadata={"m": 1})
    captured = hold_capture(ledger=ledger, hold_id=hold.pk, actor=user).hold
    assert captured.status == "captured" and captured.captured_amount == 30
    assert captured.resolved_at is not None
    entry = ledger.entry_model.objects.get(pk=captured.entry_id)
    assert (entry.amount, entry.balance_after, entry.hold_id) == (-30, 70, hold.pk)
    assert (entry.operation, entry.description, entry.metadata) == (
        Op.CREDIT_SPEND,
        "fee",
        {"m": 1},
    )
    assert snap(ledger, user) == (70, 0, 70)


def test_a_partial_capture_releases_the_rest(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 30)
    captured = hold_capture(ledger=ledger, hold_id=hold.pk, amount=12, actor=user).hold
    assert captured.captured_amount == 12
    assert snap(ledger, user) == (88, 0, 88)


@pytest.mark.parametrize("amount", [0, 31, -1])
def test_a_capture_outside_one_to_the_amount_is_refused(
    ledger: AnyLedger, user: Any, amount: int
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 30)
    with pytest.raises(ValidationFailed):
        hold_capture(ledger=ledger, hold_id=hold.pk, amount=amount, actor=user)
    assert ledger.hold_model.objects.get(pk=hold.pk).status == "pending"


def test_release_frees_the_whole_hold_and_writes_no_entry(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    entries = ledger.entry_model.objects.count()
    hold = place(ledger, user, 30)
    released = hold_release(ledger=ledger, hold_id=hold.pk, actor=user).hold
    assert released.status == "released" and released.entry_id is None
    assert ledger.entry_model.objects.count() == entries
    assert snap(ledger, user) == (100, 0, 100)


def test_a_hold_leaves_pending_once(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 30)
    hold_release(ledger=ledger, hold_id=hold.pk, actor=user)
    for again in (hold_release, hold_capture):
        with pytest.raises(HoldNotPending) as exc:
            again(ledger=ledger, hold_id=hold.pk, actor=user)
        assert exc.value.details == {"status": "released"}
    assert snap(ledger, user) == (100, 0, 100)


def test_who_may_capture_or_release(
    ledger: AnyLedger, user: Any, other_user: Any, staff: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    by_service = place(ledger, user, 10, actor=staff)
    for action in (hold_release, hold_capture):
        with pytest.raises(OperationNotAllowed):  # the account holder, on a service's hold
            action(ledger=ledger, hold_id=by_service.pk, actor=user)
    own = place(ledger, user, 10)
    with pytest.raises(OperationNotAllowed):
        hold_release(ledger=ledger, hold_id=own.pk, actor=other_user)
    assert hold_release(ledger=ledger, hold_id=own.pk, actor=staff).hold.status == "released"
    assert hold_capture(ledger=ledger, hold_id=by_service.pk, actor=staff).hold.status == (
        "captured"
    )
    with pytest.raises(HoldNotFound):
        hold_release(ledger=ledger, hold_id=10**12, actor=staff)


# --- expiry ---------------------------------------------------------------------------------------


def test_an_expired_hold_frees_its_credits_before_any_sweep(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 60, expires_in=1)
    other = place(ledger, user, 10)
    assert snap(ledger, user) == (100, 70, 30)
    wait_past(hold.expires_at)
    assert snap(ledger, user) == (100, 10, 90)
    assert [h.pk for h in hold_list(ledger=ledger, user_id=user.pk, status="expired")] == [hold.pk]
    assert [h.pk for h in hold_list(ledger=ledger, user_id=user.pk, status="pending")] == [other.pk]
    with pytest.raises(HoldNotPending) as exc:
        hold_capture(ledger=ledger, hold_id=hold.pk, actor=user)
    assert exc.value.details == {"status": "expired"}
    spend(ledger, user, 90)  # the slow path writes the expired hold down first
    stored = ledger.hold_model.objects.get(pk=hold.pk)
    assert stored.status == "expired" and stored.resolved_at is not None
    assert snap(ledger, user) == (10, 10, 0)


def test_holds_expire_writes_them_down_once(ledger: AnyLedger, user: Any, other_user: Any) -> None:
    for who in (user, other_user):
        set_balance(ledger=ledger, user=who, to=50)
        place(ledger, who, 20, expires_in=1)
    keep = place(ledger, user, 5)
    wait_past(timezone.now() + timedelta(seconds=1))
    summary = holds_expire(ledger=ledger, batch_size=1)
    assert (summary.holds, summary.users, summary.credits) == (2, 2, 40)
    assert holds_expire(ledger=ledger).holds == 0
    assert ledger.hold_model.objects.filter(status="expired").count() == 2
    assert ledger.hold_model.objects.get(pk=keep.pk).status == "pending"
    assert snap(ledger, user) == (50, 5, 45)


def test_ledger_expire_writes_down_holds(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    hold = place(ledger, user, 20, expires_in=1)
    wait_past(hold.expires_at)
    out = StringIO()
    call_command("ledger_expire", "--ledger", ledger.label, stdout=out)
    assert "1 holds expired" in out.getvalue()
    assert ledger.hold_model.objects.get(pk=hold.pk).status == "expired"


# --- with expiring credits ------------------------------------------------------------------------


def test_a_hold_draws_from_lots_like_a_spend_and_a_capture_takes_them(
    ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)  # never expire
    soon = lot_credit(ledger, user, 20, timedelta(days=1))
    later = lot_credit(ledger, user, 20, timedelta(days=2))
    hold = place(ledger, user, 30)
    assert hold.lot_moves == [[soon.pk, -20], [later.pk, -10]]
    lots = dict(ledger.lot_model.objects.filter(user=user).values_list("pk", "remaining"))
    assert lots == {soon.pk: 0, later.pk: 10}
    captured = hold_capture(ledger=ledger, hold_id=hold.pk, amount=25, actor=user).hold
    entry = ledger.entry_model.objects.get(pk=captured.entry_id)
    assert entry.lot_moves == [[soon.pk, -20], [later.pk, -5]]
    lots = dict(ledger.lot_model.objects.filter(user=user).values_list("pk", "remaining"))
    assert lots == {soon.pk: 0, later.pk: 15}
    assert snap(ledger, user) == (25, 0, 25)


def test_reserved_credits_stay_reserved_past_their_lots_expiry(
    ledger: AnyLedger, user: Any
) -> None:
    lot = lot_credit(ledger, user, 20, timedelta(milliseconds=600))
    hold = place(ledger, user, 15, expires_in=3600)
    wait_past(lot.expires_at)
    # The 5 left in the lot expired; the 15 reserved did not.
    assert snap(ledger, user)[2] == lot.amount + balance_get(ledger=ledger, user_id=user.pk) - 40
    captured = hold_capture(ledger=ledger, hold_id=hold.pk, amount=15, actor=user).hold
    assert captured.captured_amount == 15
    call_command("ledger_expire", "--ledger", ledger.label, stdout=StringIO())
    assert ledger.lot_model.objects.get(pk=lot.pk).remaining == 0


def test_a_release_gives_credits_back_and_expired_ones_expire_at_once(
    ledger: AnyLedger, user: Any
) -> None:
    start = balance_get(ledger=ledger, user_id=user.pk)
    lot = lot_credit(ledger, user, 20, timedelta(milliseconds=600))
    hold = place(ledger, user, 20, expires_in=3600)
    wait_past(lot.expires_at)
    hold_release(ledger=ledger, hold_id=hold.pk, actor=user)
    assert ledger.lot_model.objects.get(pk=lot.pk).remaining == 0
    expiry = ledger.entry_model.objects.get(user=user, operation="EXPIRY")
    assert expiry.amount == -20
    assert snap(ledger, user) == (start, 0, start)


def test_an_expired_hold_gives_credits_back_to_its_lots(ledger: AnyLedger, user: Any) -> None:
    start = balance_get(ledger=ledger, user_id=user.pk)
    lot = lot_credit(ledger, user, 20, timedelta(days=1))
    gone = lot_credit(ledger, user, 10, timedelta(milliseconds=800))
    hold = place(ledger, user, 25, expires_in=1)
    assert hold.lot_moves == [[gone.pk, -10], [lot.pk, -15]]
    wait_past(hold.expires_at)
    # The 10 from the expired lot lapse with the hold; the 15 go back to the open lot.
    assert snap(ledger, user) == (start + 30, 0, start + 20)
    holds_expire(ledger=ledger)
    remaining = dict(ledger.lot_model.objects.filter(user=user).values_list("pk", "remaining"))
    assert remaining == {lot.pk: 20, gone.pk: 10}
    call_command("ledger_expire", "--ledger", ledger.label, stdout=StringIO())
    assert ledger.lot_model.objects.get(pk=gone.pk).remaining == 0
    assert snap(ledger, user) == (start + 20, 0, start + 20)


# --- the database's guards ------------------------------------------------------------------------


def test_postgres_refuses_to_change_a_resolved_hold(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 10)
    hold_release(ledger=ledger, hold_id=hold.pk, actor=user)
    table = connection.ops.quote_name(ledger.hold_model._meta.db_table)
    for statement in (
        f"UPDATE {table} SET status = 'pending', resolved_at = NULL WHERE id = %s",
        f"UPDATE {table} SET description = 'x' WHERE id = %s",
        f"DELETE FROM {table} WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [hold.pk])
    assert ledger.hold_model.objects.get(pk=hold.pk).status == "released"


def test_postgres_refuses_held_beyond_the_balance(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    place(ledger, user, 60)
    table = connection.ops.quote_name(ledger.balance_model._meta.db_table)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET balance = 50 WHERE user_id = %s", [user.pk])


def test_ledger_check_sees_a_broken_held_amount(ledger: AnyLedger) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=100)
    place(ledger, user, 10)
    table = connection.ops.quote_name(ledger.balance_model._meta.db_table)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET held = 11 WHERE user_id = %s", [user.pk])
        kinds = {d.kind for d in ledger_check(ledger=ledger, user_ids=[user.pk])}
        transaction.set_rollback(True)
    assert kinds == {"held_mismatch"}
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_a_lot_expiring_under_a_pending_hold_keeps_what_the_hold_reserved(
    ledger: AnyLedger, user: Any
) -> None:
    start = balance_get(ledger=ledger, user_id=user.pk)
    lot = lot_credit(ledger, user, 20, timedelta(milliseconds=600))
    hold = place(ledger, user, 15, expires_in=3600)
    wait_past(lot.expires_at)
    call_command("ledger_expire", "--ledger", ledger.label, stdout=StringIO())
    first = ledger.entry_model.objects.get(user=user, operation="EXPIRY")
    assert first.amount == -5  # what the hold did not reserve
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []
    hold_release(ledger=ledger, hold_id=hold.pk, actor=user)
    expiries = ledger.entry_model.objects.filter(user=user, operation="EXPIRY").order_by("id")
    assert [e.amount for e in expiries] == [-5, -15]  # given back to an expired lot: at once
    assert snap(ledger, user) == (start, 0, start)

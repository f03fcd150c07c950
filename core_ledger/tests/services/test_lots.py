"""Expiring credits: where an expiry comes from, the draw order, expiry before any write,
ledger_expire, reversals, and bulk grants."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from core_ledger.exceptions import (
    CannotReverseExpiry,
    CreditsAlreadyUsed,
    InsufficientCredits,
    ValidationFailed,
)
from core_ledger.ledger import AnyLedger, registry
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, balance_snapshot, ledger_check, username_field
from core_ledger.services import entry_post, entry_reverse, grant_bulk
from core_ledger.services.lots import lots_expire
from core_ledger.testing import make_user, set_balance

pytestmark = pytest.mark.django_db

SHORT = timedelta(milliseconds=400)


def lot_credit(
    ledger: AnyLedger, user: Any, amount: int, expires_in: timedelta, at: Any = None
) -> Any:
    return entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=amount,
        expires_at=at or timezone.now() + expires_in,
    ).entry


def lots_of(ledger: AnyLedger, user: Any) -> dict[int, int]:
    return dict(ledger.lot_model.objects.filter(user=user).values_list("pk", "remaining"))


def spend(ledger: AnyLedger, user: Any, amount: int) -> Any:
    return entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=amount, actor=user
    ).entry


def wait_past(moment: Any) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.05)


# --- where an expiry comes from ----------------------------------------------------------------


def test_declared_lifetimes_make_lots_and_other_credits_never_expire(user: Any) -> None:
    alpha, beta = registry.get("alpha"), registry.get("beta")
    daily = entry_post(ledger=alpha, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user).entry
    assert daily.expires_at is not None
    assert timedelta(days=7) - timedelta(minutes=1) < daily.expires_at - daily.created_at
    assert alpha.lot_model.objects.get(pk=daily.pk).remaining == daily.amount
    bonus = entry_post(
        ledger=beta, user_id=user.pk, operation=beta.operation("REFERRAL_BONUS"), amount=5
    ).entry
    assert bonus.expires_at is not None
    assert (bonus.expires_at - bonus.created_at).days in (89, 90)
    for ledger in (alpha, beta):
        signup = ledger.entry_model.objects.get(user=user, operation="SIGNUP_CREDIT")
        assert signup.expires_at is None
        credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=3)
        assert credit.entry.expires_at is None


def test_settings_override_a_lifetime(user: Any) -> None:
    alpha = registry.get("alpha")
    with override_settings(SHARED_LEDGER_EXPIRES_AFTER={"alpha": {"DAILY_REWARD": None}}):
        daily = entry_post(
            ledger=alpha, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user
        ).entry
    assert daily.expires_at is None
    with override_settings(SHARED_LEDGER_EXPIRES_AFTER={"alpha": {"CREDIT_ADD": 60}}):
        assert alpha.lifetime("CREDIT_ADD") == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("operation", "expires_in", "privileged"),
    [
        (Op.CREDIT_SPEND, timedelta(days=1), True),  # a debit
        (Op.CREDIT_ADD, timedelta(seconds=-5), True),  # in the past
        (Op.CREDIT_ADD, timedelta(days=3660), True),  # beyond ten years
        (Op.DAILY_REWARD, timedelta(days=1), False),  # from the account holder
    ],
)
def test_bad_expires_at_is_a_validation_error_and_writes_nothing(
    ledger: AnyLedger, user: Any, operation: Op, expires_in: timedelta, privileged: bool
) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    actor = make_user(operator=True) if privileged else user
    before = ledger.entry_model.objects.filter(user=user).count()
    with pytest.raises(ValidationFailed) as info:
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=operation,
            actor=actor,
            amount=None if operation == Op.DAILY_REWARD else 5,
            expires_at=timezone.now() + expires_in,
        )
    assert "expires_at" in info.value.details
    assert ledger.entry_model.objects.filter(user=user).count() == before


# --- the draw order ------------------------------------------------------------------------------


def test_debits_draw_soonest_expiry_first_then_oldest_then_never_expiring(
    ledger: AnyLedger, user: Any
) -> None:
    never = balance_get(ledger=ledger, user_id=user.pk)  # the signup credit never expires
    late = lot_credit(ledger, user, 10, timedelta(days=30))
    soon_a = lot_credit(ledger, user, 5, timedelta(days=2))
    # Same expiry: the older entry pays first.
    soon_b = lot_credit(ledger, user, 5, timedelta(0), at=soon_a.expires_at)
    assert lots_of(ledger, user) == {late.pk: 10, soon_a.pk: 5, soon_b.pk: 5}

    first = spend(ledger, user, 7)
    assert first.lot_moves == [[soon_a.pk, -5], [soon_b.pk, -2]]
    second = spend(ledger, user, 3 + 10 + 4)
    assert second.lot_moves == [[soon_b.pk, -3], [late.pk, -10], [None, -4]]
    assert lots_of(ledger, user) == {late.pk: 0, soon_a.pk: 0, soon_b.pk: 0}
    assert balance_get(ledger=ledger, user_id=user.pk) == never - 4
    # With the lots empty, a spend is the plain post again (nothing recorded).
    assert spend(ledger, user, 1).lot_moves is None


# --- expiry -------------------------------------------------------------------------------------


def test_expired_credits_cannot_be_spent_before_any_sweep(ledger: AnyLedger, user: Any) -> None:
    never = balance_get(ledger=ledger, user_id=user.pk)
    lot = lot_credit(ledger, user, 50, SHORT)
    assert balance_snapshot(ledger=ledger, user_id=user.pk).available == never + 50
    wait_past(lot.expires_at)
    snapshot = balance_snapshot(ledger=ledger, user_id=user.pk)
    assert (snapshot.balance, snapshot.available) == (never + 50, never)
    count = ledger.entry_model.objects.filter(user=user).count()
    with pytest.raises(InsufficientCredits):
        spend(ledger, user, never + 1)
    # Refused: nothing written, not even the EXPIRY (it comes with the next write).
    assert ledger.entry_model.objects.filter(user=user).count() == count
    paid = spend(ledger, user, never)
    expiry = ledger.entry_model.objects.get(user=user, operation="EXPIRY")
    assert (expiry.amount, expiry.lot_moves) == (-50, [[lot.pk, -50]])
    assert expiry.pk < paid.pk and paid.balance_after == 0
    assert lots_of(ledger, user) == {lot.pk: 0}


def test_a_credit_writes_pending_expiries_first(ledger: AnyLedger, user: Any) -> None:
    lot = lot_credit(ledger, user, 20, SHORT)
    wait_past(lot.expires_at)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1).entry
    last_two = list(ledger.entry_model.objects.filter(user=user).order_by("-id")[:2])
    assert [e.operation for e in last_two] == ["CREDIT_ADD", "EXPIRY"]
    assert last_two[0].pk == credit.pk


def test_ledger_expire_writes_every_due_lot_once(ledger: AnyLedger) -> None:
    users = [make_user() for _ in range(3)]
    for u in users:
        lot_credit(ledger, u, 4, SHORT)
        lot_credit(ledger, u, 6, SHORT)
        lot_credit(ledger, u, 9, timedelta(days=1))
    wait_past(timezone.now() + SHORT)
    out = StringIO()
    call_command("ledger_expire", "--ledger", ledger.label, stdout=out)
    assert (
        "6 lots" in out.getvalue()
        and "3 users" in out.getvalue()
        and "30 credits" in out.getvalue()
    )
    now = timezone.now()
    assert not ledger.lot_model.objects.filter(remaining__gt=0, expires_at__lte=now).exists()
    assert ledger.entry_model.objects.filter(operation="EXPIRY").count() == 6
    again = lots_expire(ledger=ledger)
    assert (again.lots, again.users) == (0, 0)
    for u in users:
        assert ledger.balance_model.objects.get(user=u).next_expiry is not None


# --- reversals ----------------------------------------------------------------------------------


def test_reversing_a_debit_gives_credits_back_to_their_lots(ledger: AnyLedger, user: Any) -> None:
    operator = make_user(operator=True)
    a = lot_credit(ledger, user, 5, timedelta(days=1))
    b = lot_credit(ledger, user, 5, timedelta(days=2))
    debit = spend(ledger, user, 8)
    reversal = entry_reverse(ledger=ledger, entry_id=debit.pk, reason="refund", actor=operator)
    assert reversal.lot_moves == [[a.pk, 5], [b.pk, 3]]
    assert lots_of(ledger, user) == {a.pk: 5, b.pk: 5}


def test_credits_given_back_to_an_expired_lot_expire_again_at_once(
    ledger: AnyLedger, user: Any
) -> None:
    operator = make_user(operator=True)
    lot = lot_credit(ledger, user, 10, SHORT)
    debit = spend(ledger, user, 10)
    wait_past(lot.expires_at)
    reversal = entry_reverse(ledger=ledger, entry_id=debit.pk, reason="refund", actor=operator)
    after = list(ledger.entry_model.objects.filter(user=user, id__gte=reversal.pk).order_by("id"))
    assert [(e.operation, e.amount) for e in after] == [("REVERSAL", 10), ("EXPIRY", -10)]
    assert lots_of(ledger, user) == {lot.pk: 0}


def test_reversing_an_expiring_credit_needs_its_whole_lot(ledger: AnyLedger, user: Any) -> None:
    operator = make_user(operator=True)
    whole = lot_credit(ledger, user, 10, timedelta(days=1))
    used = lot_credit(ledger, user, 10, timedelta(days=2))
    spend(ledger, user, 13)  # all of `whole`, 3 of `used`
    assert lots_of(ledger, user)[whole.pk] == 0
    with pytest.raises(CreditsAlreadyUsed) as info:
        entry_reverse(ledger=ledger, entry_id=used.pk, reason="mistake", actor=operator)
    assert (info.value.code, info.value.status) == ("credits_already_used", 409)
    fresh = lot_credit(ledger, user, 4, timedelta(days=3))
    reversal = entry_reverse(ledger=ledger, entry_id=fresh.pk, reason="mistake", actor=operator)
    assert reversal.lot_moves == [[fresh.pk, -4]] and lots_of(ledger, user)[fresh.pk] == 0


def test_reversing_a_credit_that_never_expires_takes_back_such_credits_first(
    ledger: AnyLedger, user: Any
) -> None:
    """Taking back a never-expiring credit must not leave the user holding longer-lived credits
    than before: never-expiring credits go first, then the lots that expire last."""
    operator = make_user(operator=True)
    set_balance(ledger=ledger, user=user, to=0)

    def add(amount: int) -> Any:
        return entry_post(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=amount, actor=operator
        ).entry

    def undo(entry: Any) -> Any:
        return entry_reverse(ledger=ledger, entry_id=entry.pk, reason="mistake", actor=operator)

    soon = lot_credit(ledger, user, 10, timedelta(days=1))
    late = lot_credit(ledger, user, 10, timedelta(days=9))
    assert undo(add(20)).lot_moves is None  # all 20 from the never-expiring credits
    assert lots_of(ledger, user) == {soon.pk: 10, late.pk: 10}

    plain = add(4)
    spend(ledger, user, 22)  # both lots, then 2 of the 4 that never expire
    lot_l = lot_credit(ledger, user, 10, timedelta(days=5))
    lot_m = lot_credit(ledger, user, 10, timedelta(days=8))
    reversal = undo(plain)  # the 2 never-expiring credits left, then 2 of the latest lot
    assert reversal.lot_moves == [[None, -2], [lot_m.pk, -2]]
    assert lots_of(ledger, user) == {soon.pk: 0, late.pk: 0, lot_l.pk: 10, lot_m.pk: 8}
    assert balance_get(ledger=ledger, user_id=user.pk) == 18


def test_an_expiry_cannot_be_reversed(ledger: AnyLedger, user: Any) -> None:
    operator = make_user(operator=True)
    lot = lot_credit(ledger, user, 3, SHORT)
    wait_past(lot.expires_at)
    lots_expire(ledger=ledger)
    expiry = ledger.entry_model.objects.get(user=user, operation="EXPIRY")
    with pytest.raises(CannotReverseExpiry) as info:
        entry_reverse(ledger=ledger, entry_id=expiry.pk, reason="no", actor=operator)
    assert info.value.status == 409


# --- bulk grants ---------------------------------------------------------------------------------


def test_a_bulk_grant_makes_lots_and_writes_pending_expiries_first(ledger: AnyLedger) -> None:
    users = [make_user() for _ in range(3)]
    old = lot_credit(ledger, users[0], 7, SHORT)
    wait_past(old.expires_at)
    expires_at = timezone.now() + timedelta(days=5)
    summary = grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[u.pk for u in users],
        amount=2,
        idempotency_key="promo-lots",
        expires_at=expires_at,
    )
    assert summary.granted == 3
    for u in users:
        grant = ledger.entry_model.objects.get(user=u, idempotency_key="promo-lots")
        assert grant.expires_at == expires_at
        assert ledger.lot_model.objects.get(pk=grant.pk).remaining == 2
        assert ledger.balance_model.objects.get(user=u).next_expiry == expires_at
    ops = list(
        ledger.entry_model.objects.filter(user=users[0])
        .order_by("-id")
        .values_list("operation", flat=True)[:2]
    )
    assert ops == ["CREDIT_ADD", "EXPIRY"]


def test_a_grant_to_all_active_users_finds_them_in_the_database(ledger: AnyLedger) -> None:
    """The all-users path: the database picks the active users lacking the grant, writes
    pending expiries first, and a rerun finds nobody (everyone counted as having it)."""
    from core_ledger.selectors import active_users

    users = [make_user() for _ in range(3)]
    inactive = make_user(is_active=False)
    old = lot_credit(ledger, users[0], 7, SHORT)
    wait_past(old.expires_at)
    done = grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, all_active_users=True)
    total = active_users().count()
    assert (done.granted, done.skipped, done.failed) == (total, 0, 0)
    assert not ledger.entry_model.objects.filter(user=inactive, operation="DAILY_REWARD").exists()
    ops = list(
        ledger.entry_model.objects.filter(user=users[0])
        .order_by("-id")
        .values_list("operation", flat=True)[:2]
    )
    assert ops == ["DAILY_REWARD", "EXPIRY"]
    counted: list[int] = []
    again = grant_bulk(
        ledger=ledger, operation=Op.DAILY_REWARD, all_active_users=True, on_batch=counted.append
    )
    assert (again.granted, again.skipped) == (0, total) and sum(counted) == total


def test_a_grant_to_all_active_users_reads_each_page_of_users_right(
    ledger: AnyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2 users: what the pre-check reads about a user on a later page (a balance row
    or none, expired lots to write down first) is that user's, not the first page's."""
    from core_ledger.selectors import active_users
    from core_ledger.services import bulk

    monkeypatch.setattr(bulk, "PRECHECK_SIZE", 2)
    users = [make_user() for _ in range(3)]
    # bulk_create sends no post_save: a user with no balance row yet, on the second page.
    User = get_user_model()
    (bare,) = User.objects.bulk_create([User(**{username_field(): "bare-user@example.com"})])
    users += [bare, make_user()]
    assert not ledger.balance_model.objects.filter(user=bare).exists()
    old = lot_credit(ledger, users[4], 7, SHORT)
    wait_past(old.expires_at)
    done = grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, all_active_users=True, batch_size=1)
    assert (done.granted, done.failed) == (active_users().count(), 0)
    assert ledger.balance_model.objects.filter(user=users[3]).exists()
    ops = list(
        ledger.entry_model.objects.filter(user=users[4])
        .order_by("-id")
        .values_list("operation", flat=True)[:2]
    )
    assert ops == ["DAILY_REWARD", "EXPIRY"]
    assert ledger_check(ledger=ledger) == []


def test_ledger_check_catches_a_lot_that_disagrees_with_its_history(
    ledger: AnyLedger, user: Any
) -> None:
    lot = lot_credit(ledger, user, 5, timedelta(days=1))
    from django.db import connection

    table = connection.ops.quote_name(ledger.lot_model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET remaining = 4 WHERE entry_id = %s", [lot.pk])
    kinds = {d.kind for d in ledger_check(ledger=ledger)}
    assert {"lot_history_mismatch", "lot_credits_mismatch"} <= kinds
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET remaining = 5 WHERE entry_id = %s", [lot.pk])
    assert ledger_check(ledger=ledger) == []


def test_retrying_an_expiring_credit_after_its_expiry_replays_it(
    ledger: AnyLedger, user: Any
) -> None:
    expires_at = timezone.now() + SHORT
    first = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=4,
        expires_at=expires_at,
        idempotency_key="lot-retry",
    )
    wait_past(expires_at)
    again = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=4,
        expires_at=expires_at,
        idempotency_key="lot-retry",
    )
    assert again.replayed and again.entry.pk == first.entry.pk
    with pytest.raises(ValidationFailed):  # a new request with that moment is refused
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=4,
            expires_at=expires_at,
            idempotency_key="lot-new",
        )

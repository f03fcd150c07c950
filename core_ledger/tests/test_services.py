"""Every ledger rule of DESIGN.md through the service layer, once per registered ledger."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.utils import timezone

from core_ledger.exceptions import (
    AlreadyClaimed,
    AlreadyReversed,
    EntryNotFound,
    IdempotencyKeyReused,
    InsufficientCredits,
    OperationNotAllowed,
    ReversalNotReversible,
    ValidationFailed,
)
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_at, balance_get, ledger_check
from core_ledger.services import MAX_AMOUNT, entry_post, entry_reverse, grant_bulk
from core_ledger.services.lots import DEBIT_FUNCTION_ARGS
from core_ledger.services.lots import debit_function_name as lots_debit_function
from core_ledger.testing import make_user, set_balance


def snapshot(ledger: AnyLedger) -> tuple[int, list[tuple[Any, ...]]]:
    """Entry count and every balance row: a refusal must leave both unchanged."""
    balances = list(
        ledger.balance_model.objects.order_by("user_id").values_list("user_id", "balance")
    )
    return ledger.entry_model.objects.count(), balances


# --- directions, amounts --------------------------------------------------------------------------


def test_signup_credit_is_posted_once_on_user_creation(ledger: AnyLedger, user: Any) -> None:
    signup = ledger.entry_model.objects.get(user=user, operation=Op.SIGNUP_CREDIT)
    assert signup.amount == ledger.fixed_amount(Op.SIGNUP_CREDIT)
    assert signup.created_by_id is None
    with pytest.raises(AlreadyClaimed):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.SIGNUP_CREDIT)
    assert ledger.entry_model.objects.filter(user=user, operation=Op.SIGNUP_CREDIT).count() == 1


def test_credit_and_debit_take_their_sign_from_the_operation(ledger: AnyLedger, user: Any) -> None:
    start = balance_get(ledger=ledger, user_id=user.pk)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=25).entry
    debit = entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=7, actor=user
    ).entry
    assert (credit.amount, credit.balance_after) == (25, start + 25)
    assert (debit.amount, debit.balance_after) == (-7, start + 18)
    assert balance_get(ledger=ledger, user_id=user.pk) == start + 18
    stored = ledger.entry_model.objects.get(pk=debit.pk)
    assert (stored.amount, stored.balance_after, stored.created_by_id) == (-7, start + 18, user.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_caller_transaction", [False, True])
def test_the_entry_a_post_returns_is_the_row_it_wrote(
    ledger: AnyLedger, in_caller_transaction: bool
) -> None:
    # The one-statement post reads its row back in binary format (psycopg's C loaders) and
    # builds the entry from it: every field must equal what a query reads, time zone included.
    user = make_user()
    posted = []
    with transaction.atomic() if in_caller_transaction else nullcontext():
        for operation, amount in ((Op.CREDIT_ADD, 40), (Op.CREDIT_SPEND, 15)):
            posted.append(
                entry_post(ledger=ledger, user_id=user.pk, operation=operation, amount=amount).entry
            )
    for entry in posted:
        stored = ledger.entry_model.objects.get(pk=entry.pk)
        for field in ledger.entry_model._meta.concrete_fields:
            assert getattr(entry, field.attname) == getattr(stored, field.attname), field.name
        assert entry.created_at.utcoffset() == timedelta(0)
        assert entry.created_at.tzinfo == stored.created_at.tzinfo
        assert entry._state.db == stored._state.db and not entry._state.adding


@pytest.mark.parametrize("amount", [0, -5, MAX_AMOUNT + 1, 2**63, 1.5, "10", True, None])
def test_bad_amounts_are_refused_and_write_nothing(
    ledger: AnyLedger, user: Any, amount: Any
) -> None:
    before = snapshot(ledger)
    with pytest.raises(ValidationFailed) as info:
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=amount)
    assert info.value.code == "validation_error"
    assert "amount" in info.value.details
    assert snapshot(ledger) == before


def test_unknown_operation_is_refused(ledger: AnyLedger, user: Any) -> None:
    before = snapshot(ledger)
    with pytest.raises(ValidationFailed, match="Unknown operation"):
        entry_post(ledger=ledger, user_id=user.pk, operation="MINT_MONEY", amount=5)
    assert snapshot(ledger) == before


def test_fixed_amount_operations_refuse_a_client_amount(ledger: AnyLedger, user: Any) -> None:
    before = snapshot(ledger)
    with pytest.raises(ValidationFailed, match="fixed amount"):
        entry_post(
            ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, amount=1_000, actor=user
        )
    assert snapshot(ledger) == before
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user).entry
    assert entry.amount == ledger.fixed_amount(Op.DAILY_REWARD)


def test_fixed_amount_follows_settings(ledger: AnyLedger, user: Any, settings: Any) -> None:
    settings.SHARED_LEDGER_FIXED_AMOUNTS = {ledger.label: {"DAILY_REWARD": 3}}
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user).entry
    assert entry.amount == 3


def test_metadata_and_description_limits(ledger: AnyLedger, user: Any) -> None:
    before = snapshot(ledger)
    bad: dict[str, Any]
    for bad in (
        {"metadata": ["not", "an", "object"]},
        {"metadata": {f"k{i}": i for i in range(21)}},
        {"metadata": {"k" * 65: 1}},
        {"metadata": {"k": "v" * 501}},
        {"description": "d" * 501},
        {"description": "nul\x00byte"},
    ):
        with pytest.raises(ValidationFailed):
            entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1, **bad)
    assert snapshot(ledger) == before
    ok = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=1,
        description="bonus",
        metadata={"campaign": "spring", "n": 2},
    ).entry
    stored = ledger.entry_model.objects.get(pk=ok.pk)
    assert (stored.description, stored.metadata) == ("bonus", {"campaign": "spring", "n": 2})


def test_balance_overflow_is_a_clean_refusal(ledger: AnyLedger, user: Any) -> None:
    # Bring the balance near the 64-bit ceiling with raw SQL kept consistent (entry + balance).
    table = ledger.balance_model._meta.db_table
    entries = ledger.entry_model._meta.db_table
    near = 2**63 - 10
    current = balance_get(ledger=ledger, user_id=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {entries} (user_id, operation, amount, balance_after, request_fingerprint,"
            " description, metadata, created_at, day) VALUES (%s, 'CREDIT_ADD', %s, %s, '', '', '{}',"
            " clock_timestamp(), current_date)",
            [user.pk, near - current, near],
        )
        cursor.execute(f"UPDATE {table} SET balance = %s WHERE user_id = %s", [near, user.pk])
    before = snapshot(ledger)
    with pytest.raises(ValidationFailed, match="largest value"):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=100)
    assert snapshot(ledger) == before


# --- never negative ------------------------------------------------------------------------------


def test_debit_beyond_the_balance_is_refused_and_writes_nothing(
    ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=30)
    before = snapshot(ledger)
    with pytest.raises(InsufficientCredits) as info:
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=31, actor=user)
    assert info.value.code == "insufficient_credits"
    assert info.value.details == {"requested": 31, "balance": 30}
    assert snapshot(ledger) == before
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=30, actor=user)
    assert balance_get(ledger=ledger, user_id=user.pk) == 0


def test_debit_of_a_user_without_balance_row_is_refused(ledger: AnyLedger, db: None) -> None:
    # A user created before the ledger existed has no row at all.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
            " is_staff, is_active, date_joined) VALUES ('', false, 'legacy', '', '', '', false, true,"
            " now()) RETURNING id"
        )
        legacy_id = cursor.fetchone()[0]
    with pytest.raises(InsufficientCredits):
        entry_post(ledger=ledger, user_id=legacy_id, operation=Op.CREDIT_SPEND, amount=1)
    assert not ledger.balance_model.objects.filter(user_id=legacy_id).exists()
    assert not ledger.entry_model.objects.filter(user_id=legacy_id).exists()
    first = entry_post(ledger=ledger, user_id=legacy_id, operation=Op.CREDIT_ADD, amount=4).entry
    assert first.balance_after == 4


# --- once per user, once per day -----------------------------------------------------------------


def test_daily_reward_once_per_utc_day(ledger: AnyLedger, user: Any) -> None:
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user)
    before = snapshot(ledger)
    with pytest.raises(AlreadyClaimed) as info:
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user)
    assert info.value.code == "already_claimed"
    assert snapshot(ledger) == before


def test_yesterdays_claim_does_not_block_today(ledger: AnyLedger, user: Any) -> None:
    # Entries cannot be back-dated through the service; write yesterday's claim with raw SQL
    # (inserts are allowed; the balance row is moved to match so the invariants hold).
    amount = ledger.fixed_amount(Op.DAILY_REWARD)
    assert amount is not None
    current = balance_get(ledger=ledger, user_id=user.pk)
    yesterday = timezone.now() - timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount,"
            " balance_after, request_fingerprint, description, metadata, created_at, day)"
            " VALUES (%s, 'DAILY_REWARD', %s, %s, '', '', '{}', %s, %s)",
            [user.pk, amount, current + amount, yesterday, yesterday.date()],
        )
    ledger.balance_model.objects.filter(user=user).update(balance=current + amount)
    today = entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user).entry
    assert today.day == timezone.now().date()
    assert ledger.entry_model.objects.filter(user=user, operation=Op.DAILY_REWARD).count() == 2


def test_the_daily_unique_constraint_is_in_the_database(ledger: AnyLedger, user: Any) -> None:
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.DAILY_REWARD, actor=user)
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount,"
            " balance_after, request_fingerprint, description, metadata, created_at, day)"
            " VALUES (%s, 'DAILY_REWARD', 1, 1, '', '', '{}', now(), (now() AT TIME ZONE 'UTC')::date)",
            [user.pk],
        )


# --- idempotency ---------------------------------------------------------------------------------


def test_replaying_a_key_returns_the_original_and_posts_nothing(
    ledger: AnyLedger, user: Any
) -> None:
    first = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=5,
        actor=user,
        idempotency_key="k-1",
    )
    before = snapshot(ledger)
    again = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=5,
        actor=user,
        idempotency_key="k-1",
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert again.entry.pk == first.entry.pk
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    "change", [{"amount": 6}, {"operation": Op.DAILY_REWARD, "amount": None}, {"description": "x"}]
)
def test_reusing_a_key_for_another_request_is_refused(
    ledger: AnyLedger, user: Any, change: dict[str, Any]
) -> None:
    request: dict[str, Any] = {"operation": Op.CREDIT_SPEND, "amount": 5, "description": ""}
    entry_post(ledger=ledger, user_id=user.pk, actor=user, idempotency_key="k-2", **request)
    before = snapshot(ledger)
    with pytest.raises(IdempotencyKeyReused) as info:
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            actor=user,
            idempotency_key="k-2",
            **{**request, **change},
        )
    assert info.value.code == "idempotency_key_reused"
    assert info.value.details == {}  # reveals nothing of the original
    assert snapshot(ledger) == before


def test_a_key_is_scoped_per_account_and_per_caller(
    ledger: AnyLedger, user: Any, other_user: Any, staff: Any
) -> None:
    mine = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=1,
        actor=user,
        idempotency_key="same",
    )
    theirs = entry_post(
        ledger=ledger,
        user_id=other_user.pk,
        operation=Op.CREDIT_SPEND,
        amount=1,
        actor=other_user,
        idempotency_key="same",
    )
    assert mine.entry.pk != theirs.entry.pk and not theirs.replayed
    # Staff replaying the user's key on the user's account is another caller: refused.
    with pytest.raises(IdempotencyKeyReused):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=1,
            actor=staff,
            idempotency_key="same",
        )


def test_refused_requests_do_not_consume_the_key(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=3)
    with pytest.raises(InsufficientCredits):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=5,
            actor=user,
            idempotency_key="k-3",
        )
    set_balance(ledger=ledger, user=user, to=10)
    result = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=5,
        actor=user,
        idempotency_key="k-3",
    )
    assert not result.replayed and result.entry.amount == -5


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ünïcode"])
def test_bad_idempotency_keys_are_refused(ledger: AnyLedger, user: Any, key: str) -> None:
    with pytest.raises(ValidationFailed):
        entry_post(
            ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1, idempotency_key=key
        )


# --- who may post --------------------------------------------------------------------------------


def test_a_user_posts_only_user_operations_for_themself(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    before = snapshot(ledger)
    with pytest.raises(OperationNotAllowed):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5, actor=user)
    with pytest.raises(OperationNotAllowed, match="your own account"):
        entry_post(
            ledger=ledger, user_id=other_user.pk, operation=Op.CREDIT_SPEND, amount=1, actor=user
        )
    with pytest.raises(OperationNotAllowed):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.SIGNUP_CREDIT, actor=user)
    assert snapshot(ledger) == before


def test_staff_and_service_accounts_post_for_anyone(
    ledger: AnyLedger, user: Any, staff: Any
) -> None:
    by_staff = entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5, actor=staff
    )
    assert by_staff.entry.created_by_id == staff.pk
    service = make_user()
    app_label, codename = ledger.post_permission.split(".")
    service.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    service = type(service).objects.get(pk=service.pk)  # fresh permission cache
    by_service = entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5, actor=service
    )
    assert by_service.entry.created_by_id == service.pk


def test_nobody_posts_system_operations_through_entry_post(
    ledger: AnyLedger, user: Any, staff: Any
) -> None:
    with pytest.raises(OperationNotAllowed):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.SIGNUP_CREDIT, actor=staff)
    with pytest.raises(OperationNotAllowed):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.REVERSAL, amount=1)


def test_anonymous_actor_is_refused(ledger: AnyLedger, user: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(OperationNotAllowed):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=1,
            actor=AnonymousUser(),
        )


# --- reversals -----------------------------------------------------------------------------------


def test_reversal_undoes_an_entry_once(ledger: AnyLedger, user: Any, staff: Any) -> None:
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=40).entry
    balance = balance_get(ledger=ledger, user_id=user.pk)
    reversal = entry_reverse(
        ledger=ledger, entry_id=credit.pk, reason="granted by mistake", actor=staff
    )
    assert (reversal.amount, reversal.reverses_id, reversal.operation) == (
        -40,
        credit.pk,
        Op.REVERSAL,
    )
    assert reversal.description == "granted by mistake"
    assert balance_get(ledger=ledger, user_id=user.pk) == balance - 40
    assert ledger.entry_model.objects.get(pk=credit.pk).is_reversed
    before = snapshot(ledger)
    with pytest.raises(AlreadyReversed):
        entry_reverse(ledger=ledger, entry_id=credit.pk, reason="again", actor=staff)
    with pytest.raises(ReversalNotReversible) as info:
        entry_reverse(ledger=ledger, entry_id=reversal.pk, reason="undo the undo", actor=staff)
    assert (info.value.code, info.value.status) == ("cannot_reverse_reversal", 409)
    assert snapshot(ledger) == before


def test_reversing_a_debit_credits_it_back(ledger: AnyLedger, user: Any) -> None:
    spend = entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=9, actor=user
    ).entry
    balance = balance_get(ledger=ledger, user_id=user.pk)
    entry_reverse(ledger=ledger, entry_id=spend.pk, reason="refund")
    assert balance_get(ledger=ledger, user_id=user.pk) == balance + 9


def test_a_reversal_that_would_go_negative_is_refused(ledger: AnyLedger, user: Any) -> None:
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=50).entry
    set_balance(ledger=ledger, user=user, to=10)
    before = snapshot(ledger)
    with pytest.raises(InsufficientCredits, match="below zero"):
        entry_reverse(ledger=ledger, entry_id=credit.pk, reason="too late")
    assert snapshot(ledger) == before


def test_reversal_needs_staff_a_reason_and_an_entry(ledger: AnyLedger, user: Any) -> None:
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5).entry
    with pytest.raises(OperationNotAllowed):
        entry_reverse(ledger=ledger, entry_id=credit.pk, reason="mine", actor=user)
    with pytest.raises(ValidationFailed):
        entry_reverse(ledger=ledger, entry_id=credit.pk, reason="   ")
    with pytest.raises(EntryNotFound):
        entry_reverse(ledger=ledger, entry_id=10**12, reason="ghost")


# --- balances ------------------------------------------------------------------------------------


def test_balance_at_a_past_moment(ledger: AnyLedger, user: Any) -> None:
    start = balance_get(ledger=ledger, user_id=user.pk)
    first = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=10).entry
    second = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5).entry
    assert (
        balance_at(ledger=ledger, user_id=user.pk, at=first.created_at - timedelta(microseconds=1))
        == start
    )
    assert balance_at(ledger=ledger, user_id=user.pk, at=first.created_at) == start + 10
    assert balance_at(ledger=ledger, user_id=user.pk, at=second.created_at) == start + 15
    assert balance_at(ledger=ledger, user_id=user.pk, at=timezone.now() - timedelta(days=365)) == 0


def test_balance_after_forms_an_unbroken_chain(ledger: AnyLedger, user: Any) -> None:
    for amount in (5, 7, 11):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=amount)
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=3, actor=user)
    running = 0
    for amount, after in (
        ledger.entry_model.objects.filter(user=user)
        .order_by("id")
        .values_list("amount", "balance_after")
    ):
        running += amount
        assert after == running
    assert running == balance_get(ledger=ledger, user_id=user.pk)


def test_reading_a_balance_is_one_query(
    ledger: AnyLedger, user: Any, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(1):
        balance_get(ledger=ledger, user_id=user.pk)
    with django_assert_num_queries(1):
        balance_at(ledger=ledger, user_id=user.pk, at=timezone.now())


def test_a_post_is_one_statement_inside_a_callers_transaction(
    ledger: AnyLedger, user: Any, django_assert_num_queries: Any
) -> None:
    # Inside the test's transaction the post is behind a savepoint (+2 statements around it).
    with django_assert_num_queries(3) as ctx:
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1)
    sql = [q["sql"] for q in ctx.captured_queries]
    assert sql[0].startswith("SAVEPOINT") and sql[2].startswith("RELEASE SAVEPOINT")
    assert sql[1].startswith("WITH moved AS (INSERT INTO") and "balance" in sql[1]
    assert ledger.entry_model._meta.db_table in sql[1]


@pytest.mark.django_db(transaction=True)
def test_a_post_in_autocommit_is_one_statement_and_its_own_transaction(
    ledger: AnyLedger, django_assert_num_queries: Any
) -> None:
    """One round trip: no BEGIN, no COMMIT, just the statement (autocommit commits it)."""
    user = make_user()
    set_balance(ledger=ledger, user=user, to=5)
    for operation, amount in ((Op.CREDIT_ADD, 3), (Op.CREDIT_SPEND, 2)):
        with django_assert_num_queries(1) as ctx:
            entry_post(ledger=ledger, user_id=user.pk, operation=operation, amount=amount)
        assert ctx.captured_queries[0]["sql"].startswith("WITH moved AS")
        assert connection.get_autocommit() and not connection.in_atomic_block
    assert balance_get(ledger=ledger, user_id=user.pk) == 6
    # The UPDATE moves nothing; the debit function refuses, with the balance it read.
    with django_assert_num_queries(2), pytest.raises(InsufficientCredits) as refused:
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=7)
    assert refused.value.details == {"requested": 7, "balance": 6}
    assert balance_get(ledger=ledger, user_id=user.pk) == 6


@pytest.mark.django_db(transaction=True)
def test_reversing_a_credit_of_a_user_without_lots_writes_in_one_statement(
    ledger: AnyLedger, django_assert_num_queries: Any
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=5)
    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=4).entry
    # Reading the entry, checking it is not reversed yet, then the write: one statement.
    with django_assert_num_queries(3) as ctx:
        reversal = entry_reverse(ledger=ledger, entry_id=credit.pk, reason="a mistake")
    assert ctx.captured_queries[2]["sql"].startswith("WITH moved AS (UPDATE")
    assert (reversal.amount, reversal.reverses_id, reversal.balance_after) == (-4, credit.pk, 5)
    assert balance_get(ledger=ledger, user_id=user.pk) == 5
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


@pytest.mark.django_db(transaction=True)
def test_a_debit_drawing_from_lots_is_the_debit_function_after_the_plain_update(
    ledger: AnyLedger, django_assert_num_queries: Any
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=0)
    now = timezone.now()
    lots = [
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=2,
            expires_at=now + timedelta(days=days),
        ).entry
        for days in (2, 1)
    ]
    with django_assert_num_queries(2) as ctx:
        spent = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=3)
    first, second = (q["sql"] for q in ctx.captured_queries)
    assert first.startswith("WITH moved AS (UPDATE") and lots_debit_function(ledger) in second
    assert spent.entry.lot_moves == [[lots[1].pk, -2], [lots[0].pk, -1]]
    assert spent.entry.balance_after == 1 == balance_get(ledger=ledger, user_id=user.pk)
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


def test_without_the_debit_function_a_debit_still_draws_from_lots(
    ledger: AnyLedger, user: Any
) -> None:
    """Before ``migrate`` has (re)created it, debits take the slow path (logged once)."""
    set_balance(ledger=ledger, user=user, to=0)
    lot = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=4,
        expires_at=timezone.now() + timedelta(days=1),
    ).entry
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(f"DROP FUNCTION {lots_debit_function(ledger)}({DEBIT_FUNCTION_ARGS})")
    spent = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=3)
    assert spent.entry.lot_moves == [[lot.pk, -3]]
    assert balance_get(ledger=ledger, user_id=user.pk) == 1
    with pytest.raises(InsufficientCredits):
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=2)
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []


@pytest.mark.django_db
def test_migrate_installs_the_debit_function_and_drops_older_versions(ledger: AnyLedger) -> None:
    from django.apps import apps

    from core_ledger.signals import install_ledger_functions

    name = lots_debit_function(ledger)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP FUNCTION {name}({DEBIT_FUNCTION_ARGS})")
        cursor.execute(f"CREATE FUNCTION {name}(p integer) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    install_ledger_functions(sender=apps.get_app_config(ledger.app_label), using="default")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_function_identity_arguments(oid) FROM pg_proc WHERE proname = %s",
            [name],
        )
        assert [row[0] for row in cursor.fetchall()] == [DEBIT_FUNCTION_ARGS]


# --- bulk grant ----------------------------------------------------------------------------------


def test_bulk_grant_is_idempotent(ledger: AnyLedger, db: None) -> None:
    users = [make_user() for _ in range(5)]
    ids = [u.pk for u in users]
    entry_post(ledger=ledger, user_id=ids[0], operation=Op.DAILY_REWARD, actor=users[0])
    first = grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, user_ids=ids, batch_size=2)
    assert (first.granted, first.skipped, first.failed) == (4, 1, 0)
    before = snapshot(ledger)
    again = grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, user_ids=ids)
    assert (again.granted, again.skipped) == (0, 5)
    assert snapshot(ledger) == before
    reward = ledger.fixed_amount(Op.DAILY_REWARD) or 0
    signup = ledger.fixed_amount(Op.SIGNUP_CREDIT) or 0
    assert {balance_get(ledger=ledger, user_id=i) for i in ids} == {signup + reward}


def test_bulk_grant_of_a_free_amount_needs_a_key_and_replays_with_it(
    ledger: AnyLedger, db: None
) -> None:
    ids = [make_user().pk for _ in range(3)]
    with pytest.raises(ValidationFailed, match="idempotency key"):
        grant_bulk(ledger=ledger, operation=Op.CREDIT_ADD, user_ids=ids, amount=5)
    done = grant_bulk(
        ledger=ledger, operation=Op.CREDIT_ADD, user_ids=ids, amount=5, idempotency_key="promo-1"
    )
    again = grant_bulk(
        ledger=ledger, operation=Op.CREDIT_ADD, user_ids=ids, amount=5, idempotency_key="promo-1"
    )
    assert (done.granted, again.granted, again.skipped) == (3, 0, 3)


def test_bulk_grant_refuses_debits(ledger: AnyLedger, user: Any) -> None:
    with pytest.raises(ValidationFailed, match="credit"):
        grant_bulk(ledger=ledger, operation=Op.CREDIT_SPEND, user_ids=[user.pk], amount=1)


def test_bulk_grant_isolates_a_failing_user(ledger: AnyLedger, db: None) -> None:
    ids = [make_user().pk for _ in range(3)]
    summary = grant_bulk(ledger=ledger, operation=Op.DAILY_REWARD, user_ids=[*ids, 10**12])
    assert (summary.granted, summary.failed) == (3, 1)
    assert "user 1000000000000" in summary.errors[0]

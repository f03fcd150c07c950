"""The rules PostgreSQL holds by itself, whatever code (or person) writes raw SQL."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from core_ledger.ledger import AnyLedger
from core_ledger.models import ALLOW_TRUNCATE_SETTING
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post


def run_sql(sql: str, params: list[Any] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def insert_sql(ledger: AnyLedger) -> str:
    return (
        f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount, balance_after,"
        " request_fingerprint, description, metadata, created_at, day)"
        " VALUES (%s, %s, %s, %s, '', '', '{}', now(), current_date)"
    )


def test_entries_cannot_be_updated_with_raw_sql(ledger: AnyLedger, user: Any) -> None:
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5).entry
    with pytest.raises(DatabaseError, match="Cannot update or delete"):
        run_sql(
            f"UPDATE {ledger.entry_model._meta.db_table} SET amount = 500 WHERE id = %s", [entry.pk]
        )
    assert ledger.entry_model.objects.get(pk=entry.pk).amount == 5


def test_entries_cannot_be_deleted_with_raw_sql_or_the_orm(ledger: AnyLedger, user: Any) -> None:
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5).entry
    with pytest.raises(DatabaseError, match="Cannot update or delete"):
        run_sql(f"DELETE FROM {ledger.entry_model._meta.db_table} WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        ledger.entry_model.objects.filter(pk=entry.pk).delete()
    assert ledger.entry_model.objects.filter(pk=entry.pk).exists()


def test_truncate_is_refused_unless_the_database_allows_it(ledger: AnyLedger, user: Any) -> None:
    # The test database has the setting on (so pytest-django can reset it); switch it off here
    # to show what every other database does.
    table = ledger.entry_model._meta.db_table
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush the deferred FK checks
        cursor.execute(f"SET LOCAL {ALLOW_TRUNCATE_SETTING} = 'off'")
        cursor.execute(f"TRUNCATE {table} CASCADE")
    assert ledger.entry_model.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    ("operation", "amount", "balance_after"),
    [("MINT_MONEY", 5, 5), (Op.CREDIT_ADD, 0, 0), (Op.CREDIT_ADD, -5, -5), (Op.REVERSAL, -1, 0)],
    ids=["unknown-operation", "zero-amount", "negative-balance-after", "reversal-without-target"],
)
def test_raw_inserts_that_break_a_rule_fail(
    ledger: AnyLedger, user: Any, operation: str, amount: int, balance_after: int
) -> None:
    before = ledger.entry_model.objects.count()
    with pytest.raises(IntegrityError):
        run_sql(insert_sql(ledger), [user.pk, operation, amount, balance_after])
    assert ledger.entry_model.objects.count() == before


def test_a_negative_balance_row_is_refused(ledger: AnyLedger, user: Any) -> None:
    with pytest.raises(IntegrityError):
        run_sql(
            f"UPDATE {ledger.balance_model._meta.db_table} SET balance = -1 WHERE user_id = %s",
            [user.pk],
        )


def test_a_second_signup_credit_is_refused_by_the_database(ledger: AnyLedger, user: Any) -> None:
    with pytest.raises(IntegrityError):
        run_sql(insert_sql(ledger), [user.pk, Op.SIGNUP_CREDIT, 1, 1])


def test_an_entry_can_be_reversed_only_once_in_the_database(ledger: AnyLedger, user: Any) -> None:
    from core_ledger.services import entry_reverse

    credit = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5).entry
    entry_reverse(ledger=ledger, entry_id=credit.pk, reason="once")
    with pytest.raises(IntegrityError):
        run_sql(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount,"
            " balance_after, request_fingerprint, description, metadata, created_at, day,"
            " reverses_id) VALUES (%s, 'REVERSAL', -5, 0, '', '', '{}', now(), current_date, %s)",
            [user.pk, credit.pk],
        )


def test_an_idempotency_key_is_unique_per_user_in_the_database(
    ledger: AnyLedger, user: Any
) -> None:
    entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5, idempotency_key="dup"
    )
    with pytest.raises(IntegrityError):
        run_sql(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount,"
            " balance_after, request_fingerprint, description, metadata, created_at, day,"
            " idempotency_key) VALUES (%s, 'CREDIT_ADD', 1, 1, '', '', '{}', now(), current_date, 'dup')",
            [user.pk],
        )

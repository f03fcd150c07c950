"""The invariant checker also proves each entry's ``day`` is the UTC date of its ``created_at``
(the daily-once unique index is on ``day``: a wrong day would let a second claim through)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get, ledger_check


@pytest.mark.corrupts_ledger
@pytest.mark.django_db
def test_ledger_check_finds_a_day_that_is_not_the_utc_date(ledger: AnyLedger, user: Any) -> None:
    amount = ledger.fixed_amount("DAILY_REWARD") or 1
    current = balance_get(ledger=ledger, user_id=user.pk)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ledger.entry_model._meta.db_table} (user_id, operation, amount,"
            " balance_after, request_fingerprint, description, metadata, created_at, day)"
            " VALUES (%s, 'DAILY_REWARD', %s, %s, '', '', '{}', %s, %s)",
            [user.pk, amount, current + amount, now, (now - timedelta(days=1)).date()],
        )
    ledger.balance_model.objects.filter(user_id=user.pk).update(balance=current + amount)
    found = ledger_check(ledger=ledger, user_ids=[user.pk])
    assert [d.kind for d in found] == ["day_mismatch"]

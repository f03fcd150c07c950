"""A post for a user who does not exist is a clean validation_error at post time, in every caller
context: the foreign keys are deferred, so without the check it failed at the caller's commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from core_ledger.exceptions import ValidationFailed
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post, grant_bulk

MISSING = 987_654_321

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("operation", [Op.CREDIT_ADD, Op.CREDIT_SPEND])
def test_inside_the_callers_transaction(ledger: AnyLedger, operation: Op, user: Any) -> None:
    with transaction.atomic():
        with pytest.raises(ValidationFailed) as info:
            entry_post(ledger=ledger, user_id=MISSING, operation=operation, amount=5)
        assert info.value.code == "validation_error"
        assert info.value.details == {"user": ["No such user."]}
        # The caller's transaction is intact and goes on to commit its own work.
        entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1)
    assert not ledger.entry_model.objects.filter(user_id=MISSING).exists()
    assert not ledger.balance_model.objects.filter(user_id=MISSING).exists()
    assert ledger.entry_model.objects.filter(user=user, amount=1).exists()


def test_in_autocommit(ledger: AnyLedger) -> None:
    with pytest.raises(ValidationFailed):
        entry_post(ledger=ledger, user_id=MISSING, operation=Op.CREDIT_ADD, amount=5)
    assert not ledger.balance_model.objects.filter(user_id=MISSING).exists()


def test_a_bulk_grant_fails_only_the_missing_user(ledger: AnyLedger, user: Any) -> None:
    with transaction.atomic():
        summary = grant_bulk(
            ledger=ledger,
            operation=Op.CREDIT_ADD,
            user_ids=[user.pk, MISSING],
            amount=3,
            idempotency_key="bulk-missing",
        )
    assert (summary.granted, summary.failed) == (1, 1)
    assert summary.errors == [f"user {MISSING}: no such user"]
    assert not ledger.balance_model.objects.filter(user_id=MISSING).exists()

"""One fingerprint for every write path: posts and bulk grants judge a key's reuse alike."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from core_ledger.exceptions import IdempotencyKeyReused
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post, grant_bulk
from core_ledger.services.idempotency import fingerprint
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db


def test_a_bulk_grant_stores_the_fingerprint_entry_post_computes(
    ledger: AnyLedger, user: Any
) -> None:
    grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[user.pk],
        amount=7,
        idempotency_key="grant-1",
        description="promo",
    )
    entry = ledger.entry_model.objects.get(user=user, idempotency_key="grant-1")
    assert entry.request_fingerprint == fingerprint(
        actor_id=None,
        operation="CREDIT_ADD",
        amount=7,
        user_id=user.pk,
        description="promo",
        metadata={},
    )
    # So the same request through entry_post replays the granted entry...
    again = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=7,
        idempotency_key="grant-1",
        description="promo",
    )
    assert again.replayed and again.entry.pk == entry.pk
    # ...and another amount with the key is refused, as for any post.
    with pytest.raises(IdempotencyKeyReused):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=8,
            idempotency_key="grant-1",
            description="promo",
        )


def test_a_bulk_grant_counts_a_key_used_for_another_request_as_a_conflict(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=5,
        idempotency_key="promo-7",
    )
    before = balance_get(ledger=ledger, user_id=user.pk)
    summary = grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[user.pk, other_user.pk],
        amount=7,
        idempotency_key="promo-7",
    )
    assert (summary.granted, summary.skipped, summary.conflicts, summary.failed) == (1, 0, 1, 0)
    assert any(str(user.pk) in error for error in summary.errors)
    assert balance_get(ledger=ledger, user_id=user.pk) == before
    # The same grant again: the granted user is skipped, the conflict stays a conflict.
    rerun = grant_bulk(
        ledger=ledger,
        operation=Op.CREDIT_ADD,
        user_ids=[user.pk, other_user.pk],
        amount=7,
        idempotency_key="promo-7",
    )
    assert (rerun.granted, rerun.skipped, rerun.conflicts) == (0, 1, 1)


def test_ledger_grant_reports_conflicts_and_exits_non_zero(
    ledger: AnyLedger, user: Any, tmp_path: Any
) -> None:
    entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=5,
        idempotency_key="cmd-key",
    )
    users = tmp_path / "users.txt"
    users.write_text(f"{user.username}\n")
    out = StringIO()
    with pytest.raises(CommandError, match="idempotency_key_reused"):
        call_command(
            "ledger_grant",
            "--ledger",
            ledger.label,
            "--operation",
            "CREDIT_ADD",
            "--amount",
            "9",
            "--idempotency-key",
            "cmd-key",
            "--users-file",
            str(users),
            stdout=out,
        )
    assert "1 key conflicts" in out.getvalue()


def test_a_fixed_amount_retry_after_a_settings_change_is_the_same_request(
    ledger: AnyLedger, user: Any
) -> None:
    first = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.DAILY_REWARD,
        actor=user,
        idempotency_key="daily-retry",
    )
    with override_settings(SHARED_LEDGER_FIXED_AMOUNTS={ledger.label: {"DAILY_REWARD": 77}}):
        again = entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.DAILY_REWARD,
            actor=user,
            idempotency_key="daily-retry",
        )
    assert again.replayed and again.entry.pk == first.entry.pk


def test_another_caller_replaying_a_key_is_refused(ledger: AnyLedger, user: Any) -> None:
    staff = make_user(staff=True, operator=True)
    entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=1,
        actor=user,
        idempotency_key="mine",
    )
    with pytest.raises(IdempotencyKeyReused):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_SPEND,
            amount=1,
            actor=staff,
            idempotency_key="mine",
        )

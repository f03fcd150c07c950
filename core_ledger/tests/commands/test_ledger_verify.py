from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.core.management.base import CommandError
from django.db import connection

from core_ledger.ledger import AnyLedger, registry
from core_ledger.testing import set_balance

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def test_sound_ledgers_pass(run: Run, ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=77)
    out, _ = run("ledger_verify")
    for label in registry.labels():
        assert f"{label}: OK, every invariant holds." in out
    out, _ = run("ledger_verify", "--ledger", ledger.label)
    assert out.strip() == f"{ledger.label}: OK, every invariant holds."


@pytest.mark.corrupts_ledger
def test_corrupted_balance_is_listed_and_exits_1(run: Run, ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    table = connection.ops.quote_name(ledger.balance_model._meta.db_table)
    with connection.cursor() as cursor:  # the balance table has no guard trigger
        cursor.execute(f"UPDATE {table} SET balance = 51 WHERE user_id = %s", [user.pk])
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    with pytest.raises(CommandError, match="1 discrepancies found") as excinfo:
        call_command("ledger_verify", stdout=out)
    assert excinfo.value.returncode == 1
    text = out.getvalue()
    assert f"{ledger.label}: 1 discrepancies" in text
    assert f"[{ledger.label}] balance_mismatch: user {user.pk}" in text
    assert "stored balance 51 != sum of entries 50" in text
    others = [label for label in registry.labels() if label != ledger.label]
    for label in others:
        assert f"{label}: OK" in text


@pytest.mark.django_db
def test_unknown_ledger(run: Run) -> None:
    with pytest.raises(CommandError, match="Known ledgers: alpha, beta"):
        run("ledger_verify", "--ledger", "nope")


@pytest.mark.corrupts_ledger
def test_entry_breaking_the_chain_is_listed(ledger: AnyLedger, user: Any) -> None:
    """An entry slipped in with raw SQL (INSERT is allowed; the guard refuses UPDATE/DELETE)."""
    table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day) "
            "VALUES (%s, 'CREDIT_ADD', 5, 999, '', '', '{}', now(), current_date) RETURNING id",
            [user.pk],
        )
        (entry_id,) = cursor.fetchone()
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    with pytest.raises(CommandError, match="2 discrepancies found"):
        call_command("ledger_verify", "--ledger", ledger.label, stdout=out)
    text = out.getvalue()
    assert f"[{ledger.label}] broken_chain: user {user.pk} entry {entry_id}" in text
    assert f"[{ledger.label}] balance_mismatch: user {user.pk}" in text

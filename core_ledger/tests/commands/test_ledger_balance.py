from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management.base import CommandError

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import hold_place
from core_ledger.testing import make_user, set_balance

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def test_one_user_table(run: Run, ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=321)
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--user", user.username)
    assert out.strip() == f"{user.username} (id {user.pk}) in {ledger.label}: 321"


def test_one_user_json_by_id(run: Run, ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=12)
    out, _ = run(
        "ledger_balance", "--ledger", ledger.label, "--user-id", str(user.pk), "--format", "json"
    )
    assert json.loads(out) == {
        "ledger": ledger.label,
        "user_id": user.pk,
        "username": user.username,
        "balance": 12,
        "held": 0,
        "available": 12,
        "next_expiry": None,
        "expiring": 0,
    }


def test_available_and_the_next_expiry_are_shown(run: Run, ledger: AnyLedger, user: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from core_ledger.services import entry_post

    set_balance(ledger=ledger, user=user, to=10)
    expires_at = timezone.now() + timedelta(days=2)
    entry_post(
        ledger=ledger, user_id=user.pk, operation="CREDIT_ADD", amount=5, expires_at=expires_at
    )
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--user", user.username)
    assert out.strip() == (
        f"{user.username} (id {user.pk}) in {ledger.label}: 15 "
        f"(available 15; 5 expire at {expires_at.isoformat()})"
    )
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--format", "csv")
    row = next(r for r in csv.DictReader(io.StringIO(out)) if int(r["user_id"]) == user.pk)
    assert (row["available"], row["next_expiry"]) == ("15", expires_at.isoformat())


def test_user_is_the_username_and_user_id_the_pk_never_a_guess(
    run: Run, ledger: AnyLedger, db: None
) -> None:
    by_id = make_user()
    named = make_user(username=str(by_id.pk))  # a user whose username is the other one's id
    set_balance(ledger=ledger, user=by_id, to=5)
    set_balance(ledger=ledger, user=named, to=7)
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--user", str(by_id.pk))
    assert out.strip() == f"{by_id.pk} (id {named.pk}) in {ledger.label}: 7"
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--user-id", str(by_id.pk))
    assert out.strip() == f"{by_id.username} (id {by_id.pk}) in {ledger.label}: 5"
    # A number given as --user is a username only: no fallback to the id.
    with pytest.raises(CommandError, match=f"No user with username '{named.pk}'"):
        run("ledger_balance", "--ledger", ledger.label, "--user", str(named.pk))
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("ledger_balance", "--ledger", ledger.label, "--user", "a", "--user-id", "1")


def test_top_n_largest_first_in_every_format(run: Run, ledger: AnyLedger, db: None) -> None:
    users = [make_user() for _ in range(4)]
    for n, user in enumerate(users):
        set_balance(ledger=ledger, user=user, to=1000 + n)
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--top", "2", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["user_id"]) for r in rows] == [users[3].pk, users[2].pk]
    assert [int(r["balance"]) for r in rows] == [1003, 1002]

    out, _ = run("ledger_balance", "--ledger", ledger.label, "--top", "3", "--format", "json")
    assert [r["balance"] for r in json.loads(out)] == [1003, 1002, 1001]

    out, _ = run("ledger_balance", "--ledger", ledger.label)
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["user_id", "username", "balance"]
    assert users[3].username in lines[1] and lines[-1] == "(4 balances)"


def test_bad_top_and_format(run: Run, ledger: AnyLedger, db: None) -> None:
    with pytest.raises(CommandError, match="--top must be a positive number"):
        run("ledger_balance", "--ledger", ledger.label, "--top", "0")
    with pytest.raises(CommandError, match="invalid choice"):
        run("ledger_balance", "--ledger", ledger.label, "--format", "xml")
    with pytest.raises(CommandError, match="No user with username 'nobody'"):
        run("ledger_balance", "--ledger", ledger.label, "--user", "nobody")
    with pytest.raises(CommandError, match="invalid int value"):
        run("ledger_balance", "--ledger", ledger.label, "--user-id", "alice")


def test_held_and_available_are_shown(run: Run, ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=40)
    hold_place(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=15)
    out, _ = run("ledger_balance", "--ledger", ledger.label, "--user", user.username)
    assert out.strip() == (
        f"{user.username} (id {user.pk}) in {ledger.label}: 40 (available 25, held 15)"
    )
    table, _ = run("ledger_balance", "--ledger", ledger.label, "--format", "json")
    row = next(r for r in json.loads(table) if r["user_id"] == user.pk)
    assert (row["balance"], row["held"], row["available"]) == (40, 15, 25)

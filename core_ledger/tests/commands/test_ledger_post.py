from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.core.management.base import CommandError

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def _count(ledger: AnyLedger, user: Any) -> int:
    return int(ledger.entry_model.objects.filter(user=user).count())


def test_posts_one_entry_and_prints_it(run: Run, ledger: AnyLedger, user: Any) -> None:
    before = balance_get(ledger=ledger, user_id=user.pk)
    out, _ = run(
        "ledger_post",
        "--ledger",
        ledger.label,
        "--user",
        user.username,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "40",
        "--description",
        "goodwill",
    )
    entry = ledger.entry_model.objects.filter(user=user).order_by("-id").first()
    assert entry.operation == "CREDIT_ADD" and entry.amount == 40
    assert entry.description == "goodwill" and entry.created_by_id is None
    assert balance_get(ledger=ledger, user_id=user.pk) == before + 40
    assert out.startswith(f"Posted entry #{entry.pk} in {ledger.label}: CREDIT_ADD +40")
    assert f"balance after {before + 40}" in out


def test_user_by_id_and_debit_sign(run: Run, ledger: AnyLedger, user: Any) -> None:
    before = balance_get(ledger=ledger, user_id=user.pk)
    run(
        "ledger_post",
        "--ledger",
        ledger.label,
        "--user-id",
        str(user.pk),
        "--operation",
        "CREDIT_SPEND",
        "--amount",
        "7",
    )
    assert balance_get(ledger=ledger, user_id=user.pk) == before - 7


def test_idempotency_key_replays(run: Run, ledger: AnyLedger, user: Any) -> None:
    args = (
        "ledger_post",
        "--ledger",
        ledger.label,
        "--user",
        user.username,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "5",
        "--idempotency-key",
        "cmd-1",
    )
    first, _ = run(*args)
    count = _count(ledger, user)
    second, _ = run(*args)
    assert first.startswith("Posted entry")
    assert second.startswith("Replayed entry") and "nothing new posted" in second
    assert _count(ledger, user) == count


def test_domain_error_is_one_line_command_error_and_writes_nothing(
    run: Run, ledger: AnyLedger, user: Any
) -> None:
    count = _count(ledger, user)
    with pytest.raises(CommandError) as excinfo:
        run(
            "ledger_post",
            "--ledger",
            ledger.label,
            "--user",
            user.username,
            "--operation",
            "CREDIT_SPEND",
            "--amount",
            "999999",
        )
    message = str(excinfo.value)
    assert message.startswith("insufficient_credits:") and "\n" not in message
    assert excinfo.value.returncode == 1
    assert _count(ledger, user) == count


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--operation", "DAILY_REWARD", "--amount", "3"], "validation_error"),
        (["--operation", "NOPE", "--amount", "3"], "validation_error"),
        (["--operation", "CREDIT_ADD", "--amount", "0"], "validation_error"),
        (["--operation", "CREDIT_ADD"], "validation_error"),
        (["--operation", "REVERSAL", "--amount", "3"], "operation_not_allowed"),
    ],
)
def test_refusals(run: Run, ledger: AnyLedger, user: Any, extra: list[str], code: str) -> None:
    count = _count(ledger, user)
    with pytest.raises(CommandError, match=f"^{code}:"):
        run("ledger_post", "--ledger", ledger.label, "--user", user.username, *extra)
    assert _count(ledger, user) == count


@pytest.mark.django_db
def test_unknown_ledger_lists_known_ones(run: Run) -> None:
    with pytest.raises(CommandError, match=r"Unknown ledger 'gamma'\. Known ledgers: alpha, beta"):
        run("ledger_post", "--ledger", "gamma", "--user", "x", "--operation", "CREDIT_ADD")


@pytest.mark.django_db
def test_missing_ledger_is_refused(run: Run) -> None:
    with pytest.raises(CommandError, match="--ledger"):
        run("ledger_post", "--user", "x", "--operation", "CREDIT_ADD")


def test_user_or_user_id_is_required(run: Run, ledger: AnyLedger, db: None) -> None:
    with pytest.raises(CommandError, match="one of the arguments --user --user-id is required"):
        run("ledger_post", "--ledger", ledger.label, "--operation", "CREDIT_ADD", "--amount", "1")


def test_unknown_user(run: Run, ledger: AnyLedger, db: None) -> None:
    with pytest.raises(CommandError, match="No user with username 'ghost'"):
        run(
            "ledger_post",
            "--ledger",
            ledger.label,
            "--user",
            "ghost",
            "--operation",
            "CREDIT_ADD",
            "--amount",
            "1",
        )


def test_help_has_examples(run: Run) -> None:
    from django.core.management import load_command_class

    for name in ("ledger_post", "ledger_balance", "ledger_grant", "ledger_verify", "ledger_export"):
        command = load_command_class("core_ledger", name)
        assert "Examples:" in command.help and f"manage.py {name}" in command.help

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get
from core_ledger.testing import make_user

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def _entries(ledger: AnyLedger, operation: str) -> int:
    return int(ledger.entry_model.objects.filter(operation=operation).count())


def test_daily_reward_to_all_users_then_rerun_posts_nothing(
    run: Run, ledger: AnyLedger, db: None
) -> None:
    users = [make_user() for _ in range(25)]
    inactive = make_user(is_active=False)
    reward = ledger.fixed_amount("DAILY_REWARD")
    assert reward is not None
    before = {u.pk: balance_get(ledger=ledger, user_id=u.pk) for u in users}

    out, err = run(
        "ledger_grant",
        "--ledger",
        ledger.label,
        "--operation",
        "DAILY_REWARD",
        "--all-users",
        "--batch-size",
        "10",
    )
    assert (
        f"{ledger.label} DAILY_REWARD: 25 granted, 0 already had it, 0 key conflicts, 0 failed."
        in out
    )
    assert err == ""  # not a terminal: no progress bar
    for u in users:
        assert balance_get(ledger=ledger, user_id=u.pk) == before[u.pk] + reward
    assert not ledger.entry_model.objects.filter(user=inactive, operation="DAILY_REWARD").exists()

    count = _entries(ledger, "DAILY_REWARD")
    out, _ = run(
        "ledger_grant", "--ledger", ledger.label, "--operation", "DAILY_REWARD", "--all-users"
    )
    assert "0 granted, 25 already had it, 0 key conflicts, 0 failed." in out
    assert _entries(ledger, "DAILY_REWARD") == count


def test_grant_is_batched_not_one_transaction_per_user(
    run: Run, ledger: AnyLedger, db: None
) -> None:
    for _ in range(40):
        make_user()
    with CaptureQueriesContext(connection) as queries:
        run(
            "ledger_grant",
            "--ledger",
            ledger.label,
            "--operation",
            "DAILY_REWARD",
            "--all-users",
            "--batch-size",
            "20",
        )
    assert _entries(ledger, "DAILY_REWARD") == 40
    # Two batches of 20: a handful of statements each, far fewer than one per user.
    assert len(queries) < 20, [q["sql"][:80] for q in queries]


def test_users_file_with_key_reports_unknown_users_and_rerun_is_idempotent(
    run: Run, ledger: AnyLedger, db: None, tmp_path: Path
) -> None:
    a, b = make_user(), make_user()
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"# winners\n{a.username}\n\n{b.username}\nno-such-user\n")
    args = (
        "ledger_grant",
        "--ledger",
        ledger.label,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "15",
        "--users-file",
        str(users_file),
        "--idempotency-key",
        "promo-1",
    )
    before = balance_get(ledger=ledger, user_id=a.pk)
    with pytest.raises(CommandError, match="1 grant"):
        run(*args)
    assert balance_get(ledger=ledger, user_id=a.pk) == before + 15
    assert ledger.entry_model.objects.filter(idempotency_key="promo-1").count() == 2

    # Fix the file; the rerun posts nothing for the users who have it already.
    users_file.write_text(f"{a.username}\n{b.username}\n")
    out, _ = run(*args)
    assert "0 granted, 2 already had it, 0 key conflicts, 0 failed." in out
    assert ledger.entry_model.objects.filter(idempotency_key="promo-1").count() == 2
    assert balance_get(ledger=ledger, user_id=a.pk) == before + 15


def test_users_file_lines_are_usernames_or_with_ids_primary_keys(
    run: Run, ledger: AnyLedger, db: None, tmp_path: Path
) -> None:
    a = make_user()
    b = make_user(username=str(a.pk))  # a username that looks like the other user's id
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"{a.pk}\n")
    args = ["ledger_grant", "--ledger", ledger.label, "--operation", "CREDIT_ADD", "--amount", "3"]
    run(*args, "--users-file", str(users_file), "--idempotency-key", "by-name")
    assert ledger.entry_model.objects.filter(idempotency_key="by-name").get().user_id == b.pk

    users_file.write_text(f"# ids\n{a.pk}\nnot-a-number\n999999999\n")
    out = StringIO()
    with pytest.raises(CommandError, match="2 grant"):
        call_command(
            *args,
            "--users-file",
            str(users_file),
            "--ids",
            "--idempotency-key",
            "by-id",
            stdout=out,
        )
    assert ledger.entry_model.objects.filter(idempotency_key="by-id").get().user_id == a.pk
    assert "unknown user 'not-a-number'" in out.getvalue()
    assert "unknown user '999999999'" in out.getvalue()
    with pytest.raises(CommandError, match="--ids only applies to --users-file"):
        run(*args, "--all-users", "--ids", "--idempotency-key", "x")


def test_failure_output_names_the_unknown_user(
    run: Run, ledger: AnyLedger, db: None, tmp_path: Path
) -> None:
    users_file = tmp_path / "users.txt"
    users_file.write_text("ghost\n")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "ledger_grant",
            "--ledger",
            ledger.label,
            "--operation",
            "DAILY_REWARD",
            "--users-file",
            str(users_file),
            stdout=out,
        )
    assert "0 granted, 0 already had it, 0 key conflicts, 1 failed." in out.getvalue()
    assert "unknown user 'ghost'" in out.getvalue()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--operation", "CREDIT_ADD", "--amount", "5", "--all-users"], "needs an idempotency key"),
        (["--operation", "CREDIT_SPEND", "--amount", "5", "--all-users"], "Only credit operations"),
        (["--operation", "DAILY_REWARD", "--amount", "5", "--all-users"], "fixed amount"),
        (["--operation", "DAILY_REWARD", "--users-file", "/no/such/file"], "No such users file"),
        (["--operation", "DAILY_REWARD", "--all-users", "--batch-size", "0"], "--batch-size"),
        (["--operation", "DAILY_REWARD"], "one of the arguments --all-users --users-file"),
    ],
)
def test_refusals_write_nothing(
    run: Run, ledger: AnyLedger, user: Any, extra: list[str], message: str
) -> None:
    count = ledger.entry_model.objects.count()
    with pytest.raises(CommandError, match=message):
        run("ledger_grant", "--ledger", ledger.label, *extra)
    assert ledger.entry_model.objects.count() == count


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(ledger: AnyLedger, db: None) -> None:
    for _ in range(3):
        make_user()
    out, err = StringIO(), _Terminal()
    call_command(
        "ledger_grant",
        "--ledger",
        ledger.label,
        "--operation",
        "DAILY_REWARD",
        "--all-users",
        stdout=out,
        stderr=err,
    )
    assert "3/3" in err.getvalue() and "100%" in err.getvalue()
    assert "3 granted" in out.getvalue() and "100%" not in out.getvalue()

"""ledger_verify from a checkpoint (issue 17): only what is new is read, and the seam with what
was verified before is checked; a full run streams in batches and reports its throughput."""

from __future__ import annotations

from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core_ledger.ledger import AnyLedger
from core_ledger.models import VerifyCheckpoint
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import ledger_verify_full, ledger_verify_since
from core_ledger.services import entry_post
from core_ledger.testing import make_user, set_balance

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def verify(ledger: AnyLedger, *args: str) -> tuple[str, str]:
    """Run ledger_verify on one ledger (the checkpoint trails nothing: --settle 0)."""
    out, err = StringIO(), StringIO()
    call_command("ledger_verify", "--ledger", ledger.label, "--settle", "0", *args,
                 stdout=out, stderr=err)  # fmt: skip
    return out.getvalue(), err.getvalue()


def last_id(ledger: AnyLedger) -> int:
    return int(ledger.entry_model.objects.order_by("-id").values_list("id", flat=True)[0])


def raw_entry(ledger: AnyLedger, user: Any, amount: int, after: int) -> int:
    """An entry slipped in with raw SQL (INSERT passes the guard; UPDATE/DELETE do not)."""
    table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
    operation = Op.CREDIT_ADD if amount > 0 else Op.CREDIT_SPEND
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, operation, amount, balance_after, "
            "request_fingerprint, description, metadata, created_at, day) "
            "VALUES (%s, %s, %s, %s, '', '', '{}', clock_timestamp(), "
            "(clock_timestamp() AT TIME ZONE 'UTC')::date) RETURNING id",
            [user.pk, operation, amount, after],
        )
        return int(cursor.fetchone()[0])


def set_balance_row(ledger: AnyLedger, user: Any, balance: int) -> None:
    ledger.balance_model.objects.filter(user=user).update(balance=balance)


def test_a_clean_run_stores_a_checkpoint_and_the_next_reads_only_what_is_new(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=40)
    out, err = verify(ledger)
    assert out.strip() == f"{ledger.label}: OK, every invariant holds."
    assert f"{ledger.label}: full:" in err and "entries/s" in err  # throughput on stderr
    checkpoint = VerifyCheckpoint.objects.get(ledger=ledger.label)
    assert checkpoint.entry_id == last_id(ledger) and checkpoint.full

    mark = checkpoint.entry_id
    set_balance(ledger=ledger, user=other_user, to=75)
    new = ledger.entry_model.objects.filter(id__gt=mark).count()
    out, err = verify(ledger)
    assert out.strip() == f"{ledger.label}: OK, every invariant holds."
    assert f"since entry {mark}: {new} entries" in err
    checkpoint.refresh_from_db()
    assert checkpoint.entry_id == last_id(ledger) and not checkpoint.full


def test_the_checkpoint_trails_entries_younger_than_settle(ledger: AnyLedger, user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=40)
    call_command("ledger_verify", "--ledger", ledger.label, "--settle", "3600",
                 stdout=StringIO(), stderr=StringIO())  # fmt: skip
    # Every entry is younger than an hour: none may be taken as settled yet.
    assert not VerifyCheckpoint.objects.filter(ledger=ledger.label).exists()


@pytest.mark.corrupts_ledger
def test_incremental_catches_a_corruption_after_the_checkpoint(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=30)
    verify(ledger)
    mark = VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id

    set_balance(ledger=ledger, user=other_user, to=20)  # sound
    bad = raw_entry(ledger, user, 5, 999)  # should be 35
    set_balance_row(ledger, user, 999)

    with pytest.raises(CommandError, match="discrepancies found"):
        verify(ledger)
    result = ledger_verify_since(ledger=ledger, since=mark)
    assert {(d.kind, d.user_id, d.entry_id) for d in result.discrepancies} == {
        ("broken_chain", user.pk, bad)
    }
    # A failed run leaves the checkpoint where it was.
    assert VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id == mark


@pytest.mark.corrupts_ledger
def test_incremental_catches_a_corruption_that_straddles_the_checkpoint(
    ledger: AnyLedger, user: Any
) -> None:
    """The new entries chain among themselves and match the balance row, but the first one
    does not follow the user's last entry before the checkpoint: only the seam shows it."""
    set_balance(ledger=ledger, user=user, to=100)
    verify(ledger)
    mark = VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id

    first = raw_entry(ledger, user, 5, 5)  # as if the history started at 0, not at 100
    raw_entry(ledger, user, 7, 12)  # chains from the first
    set_balance_row(ledger, user, 12)  # the balance row agrees with the last entry

    result = ledger_verify_since(ledger=ledger, since=mark)
    assert [(d.kind, d.entry_id) for d in result.discrepancies] == [("broken_chain", first)]
    assert "!= previous 100 + amount 5" in str(result.discrepancies[0])
    out = StringIO()
    with pytest.raises(CommandError, match="1 discrepancies found"):
        call_command("ledger_verify", "--ledger", ledger.label, stdout=out, stderr=StringIO())
    assert f"broken_chain: user {user.pk} entry {first}" in out.getvalue()


@pytest.mark.corrupts_ledger
def test_incremental_catches_a_balance_row_changed_for_a_user_it_reads(
    ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    verify(ledger)
    mark = VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=5)
    set_balance_row(ledger, user, 56)  # the entries say 55
    result = ledger_verify_since(ledger=ledger, since=mark)
    assert [(d.kind, d.user_id) for d in result.discrepancies] == [("balance_mismatch", user.pk)]


@pytest.mark.corrupts_ledger
def test_incremental_checks_the_lots_of_the_users_it_reads(ledger: AnyLedger, user: Any) -> None:
    import datetime as dt

    from django.utils import timezone

    credit = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=30,
        expires_at=timezone.now() + dt.timedelta(days=3),
    ).entry
    verify(ledger)
    mark = VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id
    # The lot was drawn before the checkpoint... then tampered with; a new spend reads the user.
    ledger.lot_model.objects.filter(pk=credit.pk).update(remaining=29)
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=1)
    kinds = {d.kind for d in ledger_verify_since(ledger=ledger, since=mark).discrepancies}
    assert "lot_history_mismatch" in kinds


@pytest.mark.corrupts_ledger
def test_corruption_before_the_checkpoint_needs_a_full_run(
    ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    """What incremental runs do not read (a balance row of a user with nothing new) is what
    the scheduled full run is for."""
    set_balance(ledger=ledger, user=user, to=10)
    verify(ledger)
    set_balance_row(ledger, user, 11)
    set_balance(ledger=ledger, user=other_user, to=10)
    out, _ = verify(ledger)
    assert "OK" in out
    with pytest.raises(CommandError, match="1 discrepancies found"):
        verify(ledger, "--full")


def test_since_checks_from_the_given_entry_and_validates_it(
    run: Run, ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    first = int(
        ledger.entry_model.objects.filter(user=user).order_by("id").values_list("id", flat=True)[0]
    )
    out, err = run("ledger_verify", "--ledger", ledger.label, "--since", str(first))
    assert "OK" in out and f"since entry {first}" in err
    with pytest.raises(CommandError, match="--since must be an entry id"):
        run("ledger_verify", "--ledger", ledger.label, "--since", "-3")
    with pytest.raises(CommandError):
        run("ledger_verify", "--ledger", ledger.label, "--since", "1", "--full")


def test_full_run_streams_in_batches_and_reports_progress(ledger: AnyLedger, db: None) -> None:
    users = [make_user() for _ in range(7)]
    for i, u in enumerate(users):
        set_balance(ledger=ledger, user=u, to=10 + i)
    seen: list[Any] = []
    result = ledger_verify_full(
        ledger=ledger, users_per_batch=2, ids_per_batch=3, on_progress=seen.append
    )
    assert result.total == 0
    assert result.entries == ledger.entry_model.objects.count()
    user_batches = [p for p in seen if p.stage == "users"]
    assert len(user_batches) >= 4  # 7+ user ids, 2 per batch
    assert user_batches[-1].users_done == user_batches[-1].users_total
    done = [p.entries for p in user_batches]
    assert done == sorted(done)

    _, err = verify(ledger, "--full", "--batch-users", "2")
    assert "user ids" in err and "entries/s" in err


def _plant(kind: str, ledger: AnyLedger, user: Any, other_user: Any) -> None:
    """One corruption of ``kind``, written with raw SQL."""
    table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
    balance = int(ledger.balance_model.objects.get(user=user).balance)
    if kind == "broken_chain":
        raw_entry(ledger, user, 4, balance + 10)
        set_balance_row(ledger, user, balance + 10)
    elif kind == "bad_reversal":
        theirs = entry_post(
            ledger=ledger, user_id=other_user.pk, operation=Op.CREDIT_ADD, amount=5
        ).entry
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (user_id, operation, amount, balance_after, "
                "request_fingerprint, description, metadata, created_at, day, reverses_id) "
                "VALUES (%s, 'REVERSAL', -5, %s, '', '', '{}', clock_timestamp(), "
                "(clock_timestamp() AT TIME ZONE 'UTC')::date, %s)",
                [user.pk, balance - 5, theirs.pk],
            )
        set_balance_row(ledger, user, balance - 5)
    elif kind == "day_mismatch":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (user_id, operation, amount, balance_after, "
                "request_fingerprint, description, metadata, created_at, day) "
                "VALUES (%s, 'CREDIT_ADD', 1, %s, '', '', '{}', clock_timestamp(), "
                "'2001-01-01')",
                [user.pk, balance + 1],
            )
        set_balance_row(ledger, user, balance + 1)
    elif kind == "negative_lot":
        import datetime as dt

        from django.utils import timezone

        credit = entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=9,
            expires_at=timezone.now() + dt.timedelta(days=2),
        ).entry
        ledger.lot_model.objects.filter(pk=credit.pk).update(remaining=8)


@pytest.mark.corrupts_ledger
@pytest.mark.parametrize("kind", ["broken_chain", "bad_reversal", "day_mismatch", "negative_lot"])
def test_full_and_incremental_runs_find_what_ledger_check_finds(
    ledger: AnyLedger, user: Any, other_user: Any, kind: str
) -> None:
    """The streaming full run, the incremental run past the corruption and ledger_check (the
    after-test check) report the same discrepancies."""
    from core_ledger.selectors import ledger_check

    set_balance(ledger=ledger, user=user, to=20)
    mark = last_id(ledger)
    _plant(kind, ledger, user, other_user)
    expected = {(d.kind, d.user_id, d.entry_id) for d in ledger_check(ledger=ledger)}
    assert expected, "the corruption is planted"
    full = ledger_verify_full(ledger=ledger, users_per_batch=1, ids_per_batch=2)
    assert {(d.kind, d.user_id, d.entry_id) for d in full.discrepancies} == expected
    since = {d.kind for d in ledger_verify_since(ledger=ledger, since=mark).discrepancies}
    # The incremental run compares the balance with the last balance_after (the chain proves
    # the sum): an entry that breaks the chain is reported once, as the broken chain.
    assert since and since <= {k for k, _, _ in expected}
    assert kind in since or kind == "negative_lot"


def test_since_past_the_checkpoint_does_not_move_it(ledger: AnyLedger, user: Any) -> None:
    """Entries between the stored mark and --since were not checked: the mark stays."""
    set_balance(ledger=ledger, user=user, to=10)
    verify(ledger)
    mark = VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id
    set_balance(ledger=ledger, user=user, to=30)
    set_balance(ledger=ledger, user=user, to=5)
    verify(ledger, "--since", str(last_id(ledger) - 1))
    assert VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id == mark
    verify(ledger, "--since", str(mark))  # from the mark: contiguous, so it moves
    assert VerifyCheckpoint.objects.get(ledger=ledger.label).entry_id == last_id(ledger)

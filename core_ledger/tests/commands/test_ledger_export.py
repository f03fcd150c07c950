from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core_ledger.ledger import AnyLedger
from core_ledger.management.commands.ledger_export import COLUMNS
from core_ledger.testing import make_user, set_balance

if TYPE_CHECKING:
    from core_ledger.tests.commands.conftest import Run


def test_csv_has_every_entry_oldest_first(
    run: Run, ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=500)
    set_balance(ledger=ledger, user=other_user, to=20)
    out, _ = run("ledger_export", "--ledger", ledger.label)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0].keys()) == list(COLUMNS)
    expected = list(ledger.entry_model.objects.order_by("id").values_list("id", flat=True))
    assert [int(r["id"]) for r in rows] == expected
    last = rows[-1]
    assert last["username"] == other_user.username and json.loads(last["metadata"]) == {}


def test_jsonl_for_one_user(run: Run, ledger: AnyLedger, user: Any, other_user: Any) -> None:
    set_balance(ledger=ledger, user=user, to=500)
    set_balance(ledger=ledger, user=other_user, to=1)
    out, _ = run(
        "ledger_export", "--ledger", ledger.label, "--user", user.username, "--format", "jsonl"
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["user_id"] for r in records} == {user.pk}
    assert [r["operation"] for r in records] == ["SIGNUP_CREDIT", "CREDIT_ADD"]
    assert records[-1]["balance_after"] == 500 and records[-1]["amount"] > 0


def test_since_filters(run: Run, ledger: AnyLedger, user: Any) -> None:
    out, _ = run("ledger_export", "--ledger", ledger.label, "--since", "2999-01-01")
    assert out.strip() == ",".join(COLUMNS)
    out, _ = run("ledger_export", "--ledger", ledger.label, "--since", "2000-01-01T00:00:00Z")
    assert len(out.strip().splitlines()) == 1 + ledger.entry_model.objects.count()


def test_bad_since(run: Run, ledger: AnyLedger, db: None) -> None:
    with pytest.raises(CommandError, match="is not an ISO date"):
        run("ledger_export", "--ledger", ledger.label, "--since", "yesterday")


@pytest.mark.django_db(transaction=True)
def test_streams_through_a_server_side_cursor(run: Run, ledger: AnyLedger) -> None:
    """Memory stays constant: rows are fetched with DECLARE … CURSOR, not one big SELECT."""
    for _ in range(3):
        make_user()
    with CaptureQueriesContext(connection) as queries:
        out, _ = run("ledger_export", "--ledger", ledger.label, "--format", "jsonl")
    assert len(out.splitlines()) == 3
    # iterator() on PostgreSQL reads through a named (server-side) cursor, a chunk per fetch;
    # a plain client-side SELECT would load every row into memory at once.
    selects = [q["sql"] for q in queries if ledger.entry_model._meta.db_table in q["sql"]]
    assert selects and all(s.startswith("DECLARE ") for s in selects), selects


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_chunk_boundaries_lose_and_repeat_nothing(
    run: Run, ledger: AnyLedger, user: Any, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from core_ledger.management.commands import ledger_export

    monkeypatch.setattr(ledger_export, "CHUNK_SIZE", 2)
    for amount in (1, 2, 3, 4):
        set_balance(ledger=ledger, user=user, to=1000 + amount)
    out, _ = run("ledger_export", "--ledger", ledger.label, "--format", fmt)
    lines = out.splitlines()
    if fmt == "csv":
        ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(out))]
    else:
        ids = [json.loads(line)["id"] for line in lines]
    assert ids == list(ledger.entry_model.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 5 + ledger.entry_model.objects.exclude(user=user).count()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_throughput_goes_to_stderr_and_the_stream_stays_clean(
    run: Run, ledger: AnyLedger, user: Any, fmt: str
) -> None:
    set_balance(ledger=ledger, user=user, to=500)
    count = ledger.entry_model.objects.count()
    out, err = run("ledger_export", "--ledger", ledger.label, "--format", fmt)
    assert "rows/s" not in out and "exported" not in out
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == count + (1 if fmt == "csv" else 0)  # the header
    assert err.startswith(f"{ledger.label}: exported {count:,} entries in ")
    assert err.rstrip().endswith("rows/s)")


def test_metadata_is_written_as_json_with_sorted_keys(
    run: Run, ledger: AnyLedger, user: Any
) -> None:
    """Empty metadata goes out as the database's text, the rest parsed and re-sorted: either
    way the same JSON as json.dumps(metadata, sort_keys=True)."""
    from core_ledger.operations import SharedOperation as Op
    from core_ledger.services import entry_post

    meta = {"zeta": 1, "alpha": {"b": [1, 2.5, None], "a": "é"}, "mid": True}
    entry = entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=3, metadata=meta
    ).entry
    out, _ = run("ledger_export", "--ledger", ledger.label, "--user-id", str(user.pk))
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[entry.pk]["metadata"] == json.dumps(meta, ensure_ascii=False, sort_keys=True)
    others = [r for pk, r in rows.items() if pk != entry.pk]
    assert others and all(r["metadata"] == "{}" for r in others)
    out, _ = run(
        "ledger_export", "--ledger", ledger.label, "--user-id", str(user.pk), "--format", "jsonl"
    )
    records = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert records[entry.pk]["metadata"] == meta
    assert all(r["metadata"] == {} for pk, r in records.items() if pk != entry.pk)

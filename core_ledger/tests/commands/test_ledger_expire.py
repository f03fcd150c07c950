"""ledger_expire, and the expiry options of ledger_post and ledger_grant."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db


def test_ledger_post_takes_expires_at(ledger: AnyLedger, user: Any) -> None:
    moment = (timezone.now() + timedelta(days=9)).replace(microsecond=0)
    out = StringIO()
    call_command(
        "ledger_post",
        "--ledger",
        ledger.label,
        "--user",
        user.username,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "5",
        "--expires-at",
        moment.isoformat(),
        stdout=out,
    )
    assert f"expires {moment.isoformat()}" in out.getvalue()
    entry = ledger.entry_model.objects.filter(user=user).latest("id")
    assert entry.expires_at == moment
    assert ledger.lot_model.objects.get(pk=entry.pk).remaining == 5


@pytest.mark.parametrize("bad", ["tomorrow", "2027-01-01T00:00:00"])
def test_ledger_post_refuses_a_moment_without_zone(ledger: AnyLedger, user: Any, bad: str) -> None:
    with pytest.raises(CommandError, match="ISO 8601 moment with a time zone"):
        call_command(
            "ledger_post",
            "--ledger",
            ledger.label,
            "--user",
            user.username,
            "--operation",
            "CREDIT_ADD",
            "--amount",
            "5",
            "--expires-at",
            bad,
            stdout=StringIO(),
        )


def test_ledger_grant_takes_expires_in(ledger: AnyLedger) -> None:
    users = [make_user() for _ in range(3)]
    before = timezone.now()
    call_command(
        "ledger_grant",
        "--ledger",
        ledger.label,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "2",
        "--all-users",
        "--idempotency-key",
        "gift-expiring",
        "--expires-in",
        "30d",
        stdout=StringIO(),
    )
    for user in users:
        entry = ledger.entry_model.objects.get(user=user, idempotency_key="gift-expiring")
        assert entry.expires_at is not None
        assert timedelta(days=30) <= entry.expires_at - before < timedelta(days=30, minutes=5)


@pytest.mark.parametrize("bad", ["0", "soon", "-5d", "3y"])
def test_ledger_grant_refuses_a_bad_duration(ledger: AnyLedger, bad: str) -> None:
    with pytest.raises(CommandError, match="positive duration"):
        call_command(
            "ledger_grant",
            "--ledger",
            ledger.label,
            "--operation",
            "CREDIT_ADD",
            "--amount",
            "2",
            "--all-users",
            "--idempotency-key",
            "k",
            f"--expires-in={bad}",  # one token, so that "-5d" is not read as an option
            stdout=StringIO(),
        )


def test_ledger_expire_over_every_ledger_is_idempotent(ledger: AnyLedger, user: Any) -> None:
    call_command(
        "ledger_post",
        "--ledger",
        ledger.label,
        "--user",
        user.username,
        "--operation",
        "CREDIT_ADD",
        "--amount",
        "8",
        "--expires-at",
        (timezone.now() + timedelta(milliseconds=300)).isoformat(),
        stdout=StringIO(),
    )
    time.sleep(0.4)
    out = StringIO()
    call_command("ledger_expire", stdout=out)
    assert f"{ledger.label}: 1 lots expired for 1 users, 8 credits." in out.getvalue()
    again = StringIO()
    call_command("ledger_expire", "--ledger", ledger.label, stdout=again)
    assert again.getvalue().strip() == f"{ledger.label}: 0 lots expired for 0 users, 0 credits."
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("ledger_expire", "--batch-size", "0", stdout=StringIO())

"""Expiring credits under real concurrency: spends on threads (each its own connection) against
three lots, one expiring mid-run, while two ``ledger_expire`` processes sweep the same user.

The soonest lot pays first, so it is large (150): about six spends draw from it before it
expires, the rest of it expires, and the later spends draw from the other two lots and the
credits that never expire until the balance runs out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get, ledger_check
from core_ledger.services import entry_post
from core_ledger.testing import database_url, make_user, set_balance

pytestmark = pytest.mark.django_db(transaction=True)


def test_spends_and_two_expiry_processes_never_spend_or_expire_a_credit_twice(
    ledger: AnyLedger,
) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=20)  # credits that never expire
    start = timezone.now()
    expiring = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=150,
        expires_at=start + timedelta(seconds=0.8),
    ).entry
    for days in (1, 2):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=30,
            expires_at=start + timedelta(days=days),
        )
    total = 20 + 150 + 60

    results: list[Any] = [None] * 20

    def spender(i: int) -> None:
        try:
            time.sleep(i * 0.12)  # spread over ~2.4 s: before and after the expiry
            results[i] = entry_post(
                ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=10, actor=user
            )
        except Exception as exc:  # handed back to the assertions
            results[i] = exc
        finally:
            connection.close()

    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1"}
    threads = [threading.Thread(target=spender, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, (expiring.expires_at - timezone.now()).total_seconds()))
    sweepers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "ledger_expire", "--ledger", ledger.label],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.join(timeout=60)
    outputs = [sweeper.communicate(timeout=120) for sweeper in sweepers]
    assert all(s.returncode == 0 for s in sweepers), outputs

    codes = Counter(
        "posted" if not isinstance(r, Exception) else getattr(r, "code", repr(r)) for r in results
    )
    assert set(codes) <= {"posted", "insufficient_credits"}, codes
    assert not any(isinstance(r, Exception) and not isinstance(r, LedgerError) for r in results)

    expiries = ledger.entry_model.objects.filter(user=user, operation="EXPIRY")
    assert expiries.count() == 1, "the expiring lot was written down once, by one writer"
    expired = -expiries.get().amount
    drawn_from_expiring = sum(
        -delta
        for moves in ledger.entry_model.objects.filter(user=user, operation="CREDIT_SPEND")
        .exclude(lot_moves=None)
        .values_list("lot_moves", flat=True)
        for lot, delta in moves
        if lot == expiring.pk
    )
    assert drawn_from_expiring + expired == 150, "each credit of the lot spent or expired, once"
    spent = 10 * codes["posted"]
    assert balance_get(ledger=ledger, user_id=user.pk) == total - spent - expired >= 0
    assert ledger.lot_model.objects.get(pk=expiring.pk).remaining == 0
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []

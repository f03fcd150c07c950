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


def test_a_lot_debit_that_waited_for_the_lock_draws_from_the_lots_as_they_are_now(
    ledger: AnyLedger,
) -> None:
    """The one-statement lot draw reads the lots with the snapshot it started with. A debit
    that waits for the row lock while another transaction empties the soonest lot must not
    draw from it again: it sees that the row changed under it and runs once more."""
    user = make_user()
    start = timezone.now()
    soon = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=5,
        expires_at=start + timedelta(days=1),
    ).entry
    late = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=5,
        expires_at=start + timedelta(days=2),
    ).entry
    before = balance_get(ledger=ledger, user_id=user.pk)
    first_posted = threading.Event()
    release = threading.Event()
    results: dict[str, Any] = {}

    def holder() -> None:
        from django.db import transaction

        try:
            with transaction.atomic():
                results["first"] = entry_post(
                    ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=5
                ).entry
                first_posted.set()
                release.wait(30)
        except Exception as exc:
            results["first"] = exc
        finally:
            first_posted.set()
            connection.close()

    def waiter() -> None:
        try:
            results["second"] = entry_post(
                ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=3
            ).entry
        except Exception as exc:
            results["second"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=holder)
    one.start()
    assert first_posted.wait(30)
    two = threading.Thread(target=waiter)
    two.start()
    # Commit the first only once the second's statement waits for the row lock.
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second debit never waited for the lock")
    release.set()
    one.join(30)
    two.join(30)

    first, second = results["first"], results["second"]
    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    assert first.lot_moves == [[soon.pk, -5]]
    assert second.lot_moves == [[late.pk, -3]], "drawn from the lot as it is after the first"
    assert second.balance_after == before - 8
    assert dict(ledger.lot_model.objects.filter(user=user).values_list("pk", "remaining")) == {
        soon.pk: 0,
        late.pk: 2,
    }
    assert ledger_check(ledger=ledger, user_ids=[user.pk]) == []

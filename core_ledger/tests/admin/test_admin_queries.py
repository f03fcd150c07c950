"""The entries changelist costs a fixed number of queries, whatever the page size."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core_ledger.ledger import AnyLedger
from core_ledger.services import entry_post, entry_reverse
from core_ledger.testing import make_user


def _changelist_queries(client: Client, ledger: AnyLedger) -> tuple[int, int]:
    opts = ledger.entry_model._meta
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert response.status_code == 200
    return len(queries), len(response.context["cl"].result_list)


def _add_entries(ledger: AnyLedger, staff: Any, n: int) -> None:
    """``n`` entries over several users, some posted by staff, some reversed."""
    users = [make_user() for _ in range(3)]
    for i in range(n):
        user = users[i % 3]
        entry = entry_post(
            ledger=ledger, user_id=user.pk, operation="CREDIT_ADD", amount=1 + i, actor=staff
        ).entry
        if i % 10 == 0:
            entry_reverse(ledger=ledger, entry_id=entry.pk, reason="test", actor=staff)


def test_query_count_does_not_grow_with_page_size(
    staff_client: Client, staff: Any, ledger: AnyLedger
) -> None:
    _add_entries(ledger, staff, 2)
    few_queries, few_rows = _changelist_queries(staff_client, ledger)
    _add_entries(ledger, staff, 120)
    many_queries, many_rows = _changelist_queries(staff_client, ledger)
    assert few_rows < 10 and many_rows == 100  # a full page
    # One page is read in one query; several pages in two (the page's ids, then its rows).
    assert many_queries == few_queries + 1


def test_balances_changelist_query_count_is_flat(staff_client: Client, ledger: AnyLedger) -> None:
    opts = ledger.balance_model._meta
    page = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    make_user()
    with CaptureQueriesContext(connection) as few:
        staff_client.get(page)
    for _ in range(30):
        make_user()
    with CaptureQueriesContext(connection) as many:
        staff_client.get(page)
    assert len(many) == len(few)

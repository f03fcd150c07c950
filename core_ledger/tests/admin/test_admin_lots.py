"""The admin with expiring credits: the post form's expires_at, the lots list, available."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post


def url(model: type[Any], view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def test_post_form_makes_an_expiring_credit(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    response = staff_client.post(
        url(ledger.entry_model, "post"),
        {
            "user": user.username,
            "operation": "CREDIT_ADD",
            "amount": "6",
            "expires_at": (timezone.now() + timedelta(days=4)).strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    assert response.status_code == 302
    entry = ledger.entry_model.objects.filter(user=user).latest("id")
    assert entry.expires_at is not None
    assert ledger.lot_model.objects.get(pk=entry.pk).remaining == 6
    past = staff_client.post(
        url(ledger.entry_model, "post"),
        {
            "user": user.username,
            "operation": "CREDIT_ADD",
            "amount": "6",
            "expires_at": "2001-01-01 00:00:00",
        },
    )
    assert "Must be in the future." in str(past.context["form"].errors["expires_at"])


def test_lots_list_and_balances_show_what_is_available(
    staff_client: Client, plain_staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    soon = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=9,
        expires_at=timezone.now() + timedelta(milliseconds=300),
    ).entry
    later = entry_post(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_ADD,
        amount=4,
        expires_at=timezone.now() + timedelta(days=3),
    ).entry
    time.sleep(0.4)
    lots = staff_client.get(url(ledger.lot_model, "changelist"))
    assert lots.status_code == 200
    html = lots.content.decode()
    assert f">#{soon.pk}</a>" in html and f">#{later.pk}</a>" in html
    assert "expired (EXPIRY not written yet)" in html and "open" in html
    assert plain_staff_client.get(url(ledger.lot_model, "changelist")).status_code == 403

    balances = staff_client.get(url(ledger.balance_model, "changelist"))
    row = next(r for r in balances.context["cl"].result_list if r.user_id == user.pk)
    model_admin = balances.context["cl"].model_admin
    assert model_admin.available(row) == row.balance - 9
    detail = staff_client.get(url(ledger.entry_model, "change", soon.pk)).content.decode()
    assert "Lots moved" in detail and "Expires at" in detail


def test_user_page_shows_available_and_the_next_expirations(
    superuser_client: Client, ledger: AnyLedger, user: Any
) -> None:
    expires_at = timezone.now() + timedelta(days=6)
    entry_post(
        ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=7, expires_at=expires_at
    )
    html = superuser_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    balance = ledger.balance_model.objects.get(user=user).balance
    assert (
        f"<td class='ledger-balance'>{balance}</td><td class='ledger-held'>0</td>"
        f"<td class='ledger-available'>{balance}</td>" in html
    )
    assert f"<td class='ledger-expiring'>7 on {expires_at:%Y-%m-%d %H:%M}</td>" in html

"""The admin with holds: the holds list and its filters, the release action (through the
service), a hold's page linking its capture entry, held on the balances and the user page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import hold_capture, hold_place
from core_ledger.testing import make_user, set_balance

pytestmark = pytest.mark.django_db


def url(model: type[Any], view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def place(ledger: AnyLedger, user: Any, amount: int, actor: Any = None, **kw: Any) -> Any:
    return hold_place(
        ledger=ledger,
        user_id=user.pk,
        operation=Op.CREDIT_SPEND,
        amount=amount,
        actor=actor,
        **kw,
    ).hold


def test_holds_list_filters_and_the_capture_entry_link(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    pending = place(ledger, user, 10)
    captured = hold_capture(ledger=ledger, hold_id=place(ledger, user, 20).pk).hold
    listing = staff_client.get(url(ledger.hold_model, "changelist"))
    assert listing.status_code == 200
    shown = {h.pk for h in listing.context["cl"].result_list}
    assert {pending.pk, captured.pk} <= shown
    only_pending = staff_client.get(url(ledger.hold_model, "changelist") + "?state=pending")
    assert [h.pk for h in only_pending.context["cl"].result_list] == [pending.pk]
    page = staff_client.get(url(ledger.hold_model, "change", captured.pk)).content.decode()
    assert url(ledger.entry_model, "change", captured.entry_id) in page
    entry_page = staff_client.get(url(ledger.entry_model, "change", captured.entry_id))
    assert entry_page.status_code == 200


def test_release_action_goes_through_the_service(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=100)
    first, second = place(ledger, user, 10), place(ledger, user, 15)
    hold_capture(ledger=ledger, hold_id=second.pk)
    response = staff_client.post(
        url(ledger.hold_model, "changelist"),
        {"action": "release_selected", ACTION_CHECKBOX_NAME: [first.pk, second.pk]},
        follow=True,
    )
    text = " ".join(str(m) for m in response.context["messages"])
    assert f"Released 1 holds: #{first.pk}" in text
    assert f"Not released #{second.pk}" in text and "hold_not_pending" in text
    assert ledger.hold_model.objects.get(pk=first.pk).status == "released"


def test_a_viewer_without_post_any_entry_cannot_release_a_services_hold(
    ledger: AnyLedger, user: Any
) -> None:
    from django.contrib.auth.models import Permission

    set_balance(ledger=ledger, user=user, to=100)
    hold = place(ledger, user, 10, actor=make_user(operator=True))
    viewer = make_user(staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(
            content_type__app_label=ledger.app_label,
            codename=f"view_{ledger.hold_model._meta.model_name}",
        )
    )
    client = Client()
    client.force_login(viewer)
    response = client.post(
        url(ledger.hold_model, "changelist"),
        {"action": "release_selected", ACTION_CHECKBOX_NAME: [hold.pk]},
        follow=True,
    )
    assert "operation_not_allowed" in " ".join(str(m) for m in response.context["messages"])
    assert ledger.hold_model.objects.get(pk=hold.pk).status == "pending"


def test_balances_and_the_user_page_show_held_and_available(
    superuser_client: Client, ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    place(ledger, user, 20)
    balances = superuser_client.get(url(ledger.balance_model, "changelist"))
    row = next(r for r in balances.context["cl"].result_list if r.user_id == user.pk)
    assert balances.context["cl"].model_admin.available(row) == 30 and row.held == 20
    html = superuser_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert (
        "<td class='ledger-balance'>50</td><td class='ledger-held'>20</td>"
        "<td class='ledger-available'>30</td>" in html
    )

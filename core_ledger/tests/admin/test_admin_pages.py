"""Every ledger admin page renders for staff, refuses non-staff, and never edits an entry."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.test import Client
from django.urls import reverse

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import ledger_totals, ledger_totals_forget
from core_ledger.testing import make_user, set_balance


def url(model: type[Any], view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def pages(ledger: AnyLedger, user: Any) -> list[str]:
    entry = ledger.entry_model.objects.filter(user=user).first()
    return [
        reverse("admin:index"),
        url(ledger.entry_model, "changelist"),
        url(ledger.entry_model, "changelist") + f"?user__id__exact={user.pk}",
        url(ledger.entry_model, "changelist") + "?q=example.com&operation__exact=SIGNUP_CREDIT",
        url(ledger.entry_model, "change", entry.pk),
        url(ledger.entry_model, "post"),
        url(ledger.balance_model, "changelist"),
        url(ledger.balance_model, "changelist") + f"?q={user.username}",
        url(ledger.balance_model, "change", user.pk),
    ]


def user_pages(user: Any) -> list[str]:
    """Django's user admin keeps its own permissions (view_user); plain staff get 403 there."""
    return [
        reverse("admin:auth_user_change", args=[user.pk]),
        reverse("admin:auth_user_changelist"),
    ]


def test_every_page_renders_for_staff(
    staff_client: Client,
    superuser_client: Client,
    user_admin_client: Client,
    ledger: AnyLedger,
    user: Any,
) -> None:
    for client in (staff_client, superuser_client):
        for page in pages(ledger, user):
            response = client.get(page)
            assert response.status_code == 200, page
    for client in (superuser_client, user_admin_client):
        for page in user_pages(user):
            assert client.get(page).status_code == 200, page
    for page in user_pages(user):
        assert staff_client.get(page).status_code == 403, page


def test_staff_without_ledger_permissions_sees_no_ledger_page(
    plain_staff_client: Client, user_admin_client: Client, ledger: AnyLedger, user: Any
) -> None:
    """is_staff only opens the admin: the ledger pages take the ledger's view permissions."""
    for client in (plain_staff_client, user_admin_client):
        index = client.get(reverse("admin:index"))
        assert index.status_code == 200
        assert url(ledger.entry_model, "changelist") not in index.content.decode()
        for page in pages(ledger, user)[1:]:
            assert client.get(page).status_code in (302, 403), page


def test_view_permission_alone_shows_pages_but_no_post_form_nor_reverse_action(
    ledger: AnyLedger, user: Any
) -> None:
    from django.contrib.auth.models import Permission

    viewer = make_user(staff=True)
    for model in (ledger.entry_model, ledger.balance_model):
        viewer.user_permissions.add(
            Permission.objects.get(
                content_type__app_label=ledger.app_label, codename=f"view_{model._meta.model_name}"
            )
        )
    client = Client()
    client.force_login(viewer)
    changelist = client.get(url(ledger.entry_model, "changelist"))
    assert changelist.status_code == 200
    body = changelist.content.decode()
    assert url(ledger.entry_model, "post") not in body
    assert "reverse_selected" not in body
    assert client.get(url(ledger.entry_model, "post")).status_code == 403


def test_non_staff_and_anonymous_are_sent_to_login(
    user_client: Client, client: Client, ledger: AnyLedger, user: Any
) -> None:
    for c in (user_client, client):
        for page in pages(ledger, user) + user_pages(user):
            response = c.get(page)
            assert response.status_code == 302, page
            assert response["Location"].startswith(reverse("admin:login")), page


def test_entries_have_no_add_change_or_delete(
    superuser_client: Client, ledger: AnyLedger, user: Any
) -> None:
    entry = ledger.entry_model.objects.filter(user=user).first()
    model_admin = admin.site._registry[ledger.entry_model]
    request = superuser_client.get(url(ledger.entry_model, "changelist")).wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)
    assert "delete_selected" not in model_admin.get_actions(request)

    assert superuser_client.get(url(ledger.entry_model, "add")).status_code == 403
    assert superuser_client.get(url(ledger.entry_model, "delete", entry.pk)).status_code == 403
    response = superuser_client.post(
        url(ledger.entry_model, "change", entry.pk),
        {"description": "edited", "amount": 999_999},
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.description != "edited" and entry.amount != 999_999

    page = superuser_client.get(url(ledger.entry_model, "change", entry.pk)).content.decode()
    assert 'name="_save"' not in page and "deletelink" not in page

    balance_admin = admin.site._registry[ledger.balance_model]
    assert not balance_admin.has_add_permission(request)
    assert not balance_admin.has_change_permission(request)
    assert not balance_admin.has_delete_permission(request)


def test_entries_changelist_columns_filter_and_search(
    staff_client: Client, ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=30)  # a CREDIT_SPEND or CREDIT_ADD entry
    page = staff_client.get(url(ledger.entry_model, "changelist"))
    changelist = page.context["cl"]
    assert list(changelist.list_display)[1:] == [
        "id",
        "user",
        "operation",
        "signed_amount",
        "balance_after",
        "created_at",
        "reversed_flag",
    ]
    assert changelist.date_hierarchy is None  # a date drill-down reads the whole table

    filtered = staff_client.get(
        url(ledger.entry_model, "changelist") + f"?user__id__exact={other_user.pk}"
    )
    assert {e.user_id for e in filtered.context["cl"].result_list} == {other_user.pk}

    searched = staff_client.get(url(ledger.entry_model, "changelist") + f"?q={user.username}")
    assert {e.user_id for e in searched.context["cl"].result_list} == {user.pk}


def test_balances_changelist_shows_totals_and_links_to_entries(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=700)
    zero = make_user()
    set_balance(ledger=ledger, user=zero, to=0)
    totals = ledger_totals(ledger=ledger)
    ledger_totals_forget(ledger=ledger)  # cached for a minute by the page
    assert totals.outstanding >= 700 and totals.users_with_balance >= 1

    response = staff_client.get(url(ledger.balance_model, "changelist"))
    html = response.content.decode()
    assert f'id="ledger-outstanding">{totals.outstanding}<' in html
    assert f'id="ledger-users-with-balance">{totals.users_with_balance}<' in html
    rows = list(response.context["cl"].result_list)
    # User id order: the primary key, so a page costs the same at 1,000,000 users.
    assert [r.user_id for r in rows] == sorted(r.user_id for r in rows)
    entries_link = url(ledger.entry_model, "changelist") + f"?user__id__exact={user.pk}"
    assert entries_link in html

    sorted_by_user = staff_client.get(url(ledger.balance_model, "changelist") + "?o=1")
    assert sorted_by_user.status_code == 200


def test_user_page_shows_balance_in_every_ledger(staff: Any, user: Any, ledger: AnyLedger) -> None:
    """An operator of every ledger who may also see users gets every row and every link."""
    from django.contrib.auth.models import Permission

    from core_ledger.ledger import registry

    staff.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(staff)
    set_balance(ledger=ledger, user=user, to=4321)
    html = client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert "4321" in html
    for each in registry:
        assert each.name in html
        assert url(each.entry_model, "changelist") + f"?user__id__exact={user.pk}" in html
        assert url(each.balance_model, "change", user.pk) in html
        assert url(each.entry_model, "post") + f"?user={user.pk}" in html

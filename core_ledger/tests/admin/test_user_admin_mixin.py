"""The ledger panel is a mixin a host puts on its own user admin; the core registers no user admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.sites import AdminSite
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.test import Client, RequestFactory
from django.urls import reverse

from core_ledger.admin import LedgerUserAdminMixin
from core_ledger.ledger import registry
from core_ledger.testing import make_user, set_balance


def test_this_project_puts_the_mixin_on_djangos_user_admin(db: None) -> None:
    reverse("admin:index")  # the URLconf imports ledger_project.admin, as a request would
    registered = type(admin.site._registry[get_user_model()])
    assert registered.__module__ == "ledger_project.admin"
    assert issubclass(registered, LedgerUserAdminMixin)
    assert issubclass(registered, DjangoUserAdmin)


class PlainUserAdmin(LedgerUserAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    """A host's user admin with no fieldsets and readonly fields of its own."""

    readonly_fields = ("last_login",)


def test_mixin_on_any_model_admin_adds_one_panel_on_the_change_page_only(db: None) -> None:
    user = make_user()
    request = RequestFactory().get("/")
    request.user = make_user(staff=True, is_superuser=True)
    model_admin = PlainUserAdmin(get_user_model(), AdminSite(name="host"))

    assert "ledger_balances" not in model_admin.get_readonly_fields(request)
    add_fields = [f for _, opts in model_admin.get_fieldsets(request) for f in opts["fields"]]
    assert "ledger_balances" not in add_fields

    assert model_admin.get_readonly_fields(request, user) == ("last_login", "ledger_balances")
    fieldsets = model_admin.get_fieldsets(request, user)
    change_fields = [f for _, opts in fieldsets for f in opts["fields"]]
    assert change_fields.count("ledger_balances") == 1
    assert fieldsets[1] == ("Ledgers", {"fields": ("ledger_balances",)})
    assert "last_login" in change_fields  # the host's own fields stay


def test_panel_shows_every_ledger_balance(superuser_client: Client, ledger: Any) -> None:
    user = make_user()
    set_balance(ledger=ledger, user=user, to=777)
    html = superuser_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert html.count("class='ledger-balances'") == 1
    assert "<td class='ledger-balance'>777</td>" in html
    for each in registry:
        assert each.name in html


def test_panel_shows_only_the_ledgers_the_viewer_may_see(
    user_admin_client: Client, ledger: Any
) -> None:
    """Staff allowed to see users but no ledger see the panel empty; a ledger's view permission
    shows that ledger's row, without the post link unless they hold post_any_entry."""
    from django.contrib.auth.models import Permission

    user = make_user()
    set_balance(ledger=ledger, user=user, to=321)
    page = reverse("admin:auth_user_change", args=[user.pk])
    html = user_admin_client.get(page).content.decode()
    assert "No ledger you may see." in html and "321" not in html

    viewer = make_user(staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_user"),
        Permission.objects.get(
            content_type__app_label=ledger.app_label,
            codename=f"view_{ledger.balance_model._meta.model_name}",
        ),
    )
    client = Client()
    client.force_login(viewer)
    html = client.get(page).content.decode()
    assert "<td class='ledger-balance'>321</td>" in html
    assert ledger.name in html and "post an entry" not in html
    for other in registry:
        if other.label != ledger.label:
            assert other.name not in html

"""ledger_operators: one step gives (and takes) a ledger's rights, through the API and the admin."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from core_ledger.ledger import AnyLedger, registry
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db


def fresh(user: Any) -> Any:
    return type(user).objects.get(pk=user.pk)


def test_grant_gives_the_three_rights_in_that_ledger_only(ledger: AnyLedger) -> None:
    alice = make_user()
    out = StringIO()
    call_command(
        "ledger_operators",
        "--ledger",
        ledger.label,
        "--grant",
        "--user",
        alice.username,
        stdout=out,
    )
    assert f"operator of {ledger.label}" in out.getvalue()
    assert "API only" in out.getvalue()
    alice = fresh(alice)
    for perm in (ledger.post_permission, ledger.reverse_permission, ledger.view_all_permission):
        assert alice.has_perm(perm)
    assert not alice.is_staff
    for other in registry:
        if other.label != ledger.label:
            assert not alice.has_perm(other.post_permission)


def test_grant_with_staff_opens_the_admin_pages_and_revoke_closes_them(ledger: AnyLedger) -> None:
    bob = make_user()
    call_command(
        "ledger_operators",
        "--ledger",
        ledger.label,
        "--grant",
        "--user-id",
        str(bob.pk),
        "--staff",
        stdout=StringIO(),
    )
    client = Client()
    client.force_login(fresh(bob))
    opts = ledger.entry_model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    post = reverse(f"admin:{opts.app_label}_{opts.model_name}_post")
    assert client.get(changelist).status_code == 200
    assert client.get(post).status_code == 200

    out = StringIO()
    call_command("ledger_operators", "--ledger", ledger.label, stdout=out)
    assert bob.username in out.getvalue()

    call_command(
        "ledger_operators",
        "--ledger",
        ledger.label,
        "--revoke",
        "--user",
        bob.username,
        stdout=out,
    )
    client.force_login(fresh(bob))
    assert client.get(changelist).status_code == 403
    assert client.get(post).status_code == 403
    assert not fresh(bob).has_perm(ledger.post_permission)

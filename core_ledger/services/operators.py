"""Operators: the people and service accounts that hold a ledger's rights, granted in one step.

Each ledger gets a group, ``"<label> ledger operators"``, holding ``post_any_entry``,
``reverse_entry``, ``view_all_accounts`` and the admin's view permissions for the ledger's
pages. Granting adds a user to it (and, with ``staff=True``, lets them log into the admin).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import username_field


def operator_group_name(ledger: AnyLedger) -> str:
    return f"{ledger.label} ledger operators"


@transaction.atomic
def operator_group(*, ledger: AnyLedger) -> Group:
    """The ledger's operator group with exactly its permissions (made or mended on each call)."""
    group, _ = Group.objects.get_or_create(name=operator_group_name(ledger))
    permissions = []
    for dotted in ledger.operator_permissions:
        app_label, codename = dotted.split(".", 1)
        permissions.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    group.permissions.set(permissions)
    return group


@transaction.atomic
def operator_grant(*, ledger: AnyLedger, user: Any, staff: bool = False) -> Group:
    """Make ``user`` an operator of ``ledger``; ``staff`` also opens the admin to them."""
    group = operator_group(ledger=ledger)
    user.groups.add(group)
    if staff and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return group


@transaction.atomic
def operator_revoke(*, ledger: AnyLedger, user: Any) -> None:
    """Take ``user`` out of the ledger's operator group (their own direct permissions stay)."""
    group = Group.objects.filter(name=operator_group_name(ledger)).first()
    if group is not None:
        user.groups.remove(group)


def operator_list(*, ledger: AnyLedger) -> list[Any]:
    """The members of the ledger's operator group, by username field."""
    User = get_user_model()
    return list(
        User.objects.filter(groups__name=operator_group_name(ledger)).order_by(username_field())
    )

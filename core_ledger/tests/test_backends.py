"""The one-query permission backend gives exactly the answers of Django's ModelBackend."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import Group, Permission

from core_ledger.backends import ModelBackend
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db


def _both(user: Any) -> tuple[set[str], set[str]]:
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    ours = ModelBackend().get_all_permissions(user)
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    return ours, DjangoModelBackend().get_all_permissions(user)


def test_same_permissions_as_django_for_direct_group_inactive_and_superusers() -> None:
    post_any = Permission.objects.get(
        codename="post_any_entry", content_type__app_label="app_alpha"
    )
    other = Permission.objects.get(codename="view_group")
    plain, direct, grouped, both, inactive = (make_user() for _ in range(5))
    group = Group.objects.create(name="services")
    group.permissions.add(post_any, other)
    direct.user_permissions.add(post_any)
    grouped.groups.add(group)
    both.user_permissions.add(other)
    both.groups.add(group)
    inactive.user_permissions.add(post_any)
    inactive.is_active = False
    admin = make_user(staff=True)
    admin.is_superuser = True

    expected = {
        plain: set(),
        direct: {"app_alpha.post_any_entry"},
        grouped: {"app_alpha.post_any_entry", "auth.view_group"},
        both: {"app_alpha.post_any_entry", "auth.view_group"},
        inactive: set(),
    }
    for user, perms in expected.items():
        ours, django = _both(user)
        assert ours == django == perms
    ours, django = _both(admin)
    assert ours == django and "app_alpha.post_any_entry" in ours


def test_has_perm_is_one_query(django_assert_num_queries: Any) -> None:
    user = make_user()
    user.user_permissions.add(
        Permission.objects.get(codename="post_any_entry", content_type__app_label="app_alpha")
    )
    user = type(user).objects.get(pk=user.pk)  # fresh object: no cached permissions
    with django_assert_num_queries(1):
        assert user.has_perm("app_alpha.post_any_entry")
        assert not user.has_perm("app_beta.post_any_entry")

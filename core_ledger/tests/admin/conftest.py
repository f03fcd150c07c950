"""Fixtures for the admin tests: a signed-in staff client and a signed-in non-staff client."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from core_ledger.testing import make_user


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    """make_user hashes a password; the default hasher costs ~0.3 s per user on this machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(staff: Any) -> Client:
    """Staff operator of every ledger (the `staff` fixture): sees and acts on the ledger admin."""
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def user_admin_client(db: None) -> Client:
    """Staff allowed to view users (Django's own permission for the user admin)."""
    from django.contrib.auth.models import Permission

    viewer = make_user(staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def plain_staff_client(db: None) -> Client:
    """Staff without any ledger permission: may log into the admin, sees no ledger page."""
    client = Client()
    client.force_login(make_user(staff=True))
    return client


@pytest.fixture
def superuser_client(db: None) -> Client:
    client = Client()
    client.force_login(make_user(staff=True, is_superuser=True))
    return client


@pytest.fixture
def user_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client

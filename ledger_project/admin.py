"""This project's own admin registrations: Django's user admin with the ledgers' balances panel.

The core registers no user admin of its own; a project puts ``LedgerUserAdminMixin`` on its user
admin, as here. Imported by ``ledger_project.urls`` before the admin's URLs are built (the project
package is not an installed app, so admin autodiscovery does not find this module).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from core_ledger.admin import LedgerUserAdminMixin

User = get_user_model()


class UserAdmin(LedgerUserAdminMixin, DjangoUserAdmin):  # type: ignore[type-arg]  # generic in stubs only
    """Django's user admin, plus each user's balance in every ledger."""


# django.contrib.auth registered its own UserAdmin; this project replaces it with the one above.
if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, UserAdmin)

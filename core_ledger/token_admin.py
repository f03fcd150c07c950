"""The admin of API tokens: who holds one, since when, until when; revoke them.

The admin shows a prefix of the digest only (the token itself is never stored). Tokens are
issued by ``POST /api/auth/token/``, never in the admin: there is no add or change page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from core_ledger.models import ApiToken
from core_ledger.selectors import username_field
from core_ledger.services.tokens import tokens_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # pyright: ignore[reportMissingTypeArgument]  # generic in the stubs only
    """Lists tokens (user, created, expiry, digest prefix) and revokes them."""

    list_display = ("digest_prefix", "user", "created", "expiry", "active")
    list_select_related = ("user",)
    list_filter = ("expiry", "created")
    readonly_fields = ("digest_prefix", "user", "created", "expiry", "active")
    fields = readonly_fields
    actions = ["revoke"]
    date_hierarchy = "created"

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [f"user__{username_field()}", "digest"]

    @admin.display(description="digest prefix")
    def digest_prefix(self, obj: ApiToken) -> str:
        return f"{obj.digest[:8]}…"

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiToken) -> bool:
        return obj.expiry > timezone.now()

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = tokens_revoke(token_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Revoke" says what deleting a token means
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

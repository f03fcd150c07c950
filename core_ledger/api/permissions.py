"""Who may read what. Posting and reversing are authorised by ``core_ledger.services``.

Reading other users' entries and balances is for staff and for the ledger's service accounts
(users holding ``<app_label>.post_any_entry``): a service that may post for anyone must be able
to read back what it posted. Everyone else sees only their own account.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core_ledger.ledger import AnyLedger


def can_read_all(ledger: AnyLedger, user: Any) -> bool:
    """Staff, or a service account of ``ledger``."""
    if user is None or not user.is_authenticated:
        return False
    return bool(user.is_staff or user.has_perm(ledger.post_permission))


class CanReadAllAccounts(BasePermission):
    """The view's ledger lets this caller read every account (staff or service account)."""

    message = "Only staff or a service account of this ledger may read other users' accounts."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_all(view.ledger, request.user)

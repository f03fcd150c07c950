"""Who may read what. Posting and reversing are authorised by ``core_ledger.services``.

Reading other users' entries and balances takes the ledger's ``view_all_accounts`` permission
(superusers have it); ``is_staff`` alone opens nothing here. Everyone else sees only their own
account.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core_ledger.ledger import AnyLedger
from core_ledger.services.policy import can_view_all


def can_read_all(ledger: AnyLedger, user: Any) -> bool:
    """Holds ``view_all_accounts`` on ``ledger`` (or is a superuser)."""
    return can_view_all(ledger, user)


class CanReadAllAccounts(BasePermission):
    """The view's ledger lets this caller read every account."""

    message = "Reading other users' accounts takes this ledger's view_all_accounts permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_all(view.ledger, request.user)

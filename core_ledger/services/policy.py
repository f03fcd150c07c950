"""The posting policy: who may post which operation for whom (the ledger declaration's rules)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from core_ledger.exceptions import OperationNotAllowed
from core_ledger.ledger import AnyLedger, OperationRule, PostedBy

Actor = AbstractBaseUser | AnonymousUser | None
"""Who asks for a write: a user, an anonymous request, or None for the system itself."""


def _has_perm(actor: Actor, permission: str) -> bool:
    if actor is None or not actor.is_authenticated:
        return False
    has_perm = getattr(actor, "has_perm", None)  # custom user models may lack PermissionsMixin
    return bool(has_perm and has_perm(permission))


def is_privileged(ledger: AnyLedger, actor: Actor) -> bool:
    """May post any operation for any user: the ledger's ``post_any_entry`` (or a superuser).

    ``is_staff`` grants nothing here: in Django it only means "may log into the admin".
    """
    return _has_perm(actor, ledger.post_permission)


def can_reverse(ledger: AnyLedger, actor: Actor) -> bool:
    """May reverse entries: the ledger's ``reverse_entry`` (or a superuser)."""
    return _has_perm(actor, ledger.reverse_permission)


def can_view_all(ledger: AnyLedger, actor: Actor) -> bool:
    """May read every account: the ledger's ``view_all_accounts`` (or a superuser)."""
    return _has_perm(actor, ledger.view_all_permission)


def actor_id(actor: Actor) -> int | None:
    """The id stored as ``created_by``: the caller's, or None for the system."""
    if actor is None or not actor.is_authenticated or actor.pk is None:
        return None
    return int(actor.pk)


def authorize(
    *, ledger: AnyLedger, rule: OperationRule, operation: str, actor: Actor, user_id: int
) -> None:
    """Refuse with ``operation_not_allowed`` unless ``actor`` may post ``operation`` for ``user_id``."""
    if actor is None:  # the system itself: commands, signals, bulk jobs
        return
    if not actor.is_authenticated:
        raise OperationNotAllowed("Sign in to post entries.")
    if rule.posted_by is PostedBy.SYSTEM:
        raise OperationNotAllowed(
            f"{operation} is posted by the ledger itself, not through this endpoint.",
            operation=operation,
        )
    if rule.posted_by is PostedBy.USER and actor.pk == user_id:
        # The account holder's own operation: allowed whoever they are, so skip the permission
        # look-up (has_perm costs two queries on the fresh user object of each API request).
        return
    if is_privileged(ledger, actor):
        return
    if rule.posted_by is PostedBy.STAFF:
        raise OperationNotAllowed(
            f"Only a service account or operator of this ledger may post {operation}.",
            operation=operation,
        )
    if actor.pk != user_id:
        raise OperationNotAllowed("You may only post to your own account.", operation=operation)

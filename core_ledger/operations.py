"""Operations: the members every ledger shares, and the base class an app declares its own with.

An app writes its operations as a plain class that mypy and pyright both read::

    class AlphaOperation(LedgerOperation):
        # The shared members, restated first (system check core_ledger.E010 proves they match).
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")
        # The app's own, appended (never reorder or relabel: it makes a migration).
        GAME_WIN = "GAME_WIN", _("Game win")

Enums with members cannot be subclassed, so the shared members are restated rather than
inherited; restating them is what lets both type-checkers see ``AlphaOperation.DAILY_REWARD``
without a plugin. ``startledgerapp`` writes the shared block for you.
"""

from __future__ import annotations

import re

from django.db import models
from django.utils.translation import gettext_lazy as _

OPERATION_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class LedgerOperation(models.TextChoices):
    """Base of every operations class (no members of its own, so it can be subclassed)."""


class SharedOperation(LedgerOperation):
    """Operations every ledger has, in this order. ``REVERSAL`` is posted only by the core."""

    DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
    SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
    CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
    CREDIT_ADD = "CREDIT_ADD", _("Credit add")
    REVERSAL = "REVERSAL", _("Reversal")
    EXPIRY = "EXPIRY", _("Expiry")


def shared_members_problem(operations: type[LedgerOperation]) -> str | None:
    """Why ``operations`` does not start with the shared members unchanged, or None if it does."""
    names = list(operations.names)
    shared = list(SharedOperation)
    for position, member in enumerate(shared):
        if position >= len(names) or names[position] != member.name:
            found = names[position] if position < len(names) else "nothing"
            if member.name not in names:
                return f"lacks the shared member {member.name}"
            return (
                f"has {found} where the shared member {member.name} belongs (position {position})"
            )
        own = operations[member.name]
        if own.value != member.value:
            return f"{member.name} has value {own.value!r}, not the shared {member.value!r}"
        if str(own.label) != str(member.label):
            return (
                f"{member.name} has label {str(own.label)!r}, not the shared {str(member.label)!r}"
            )
    for name in names[len(shared) :]:
        if not OPERATION_NAME.match(name) or operations[name].value != name:
            return f"{name} must be UPPER_SNAKE_CASE (at most 64 characters) with value {name!r}"
    return None

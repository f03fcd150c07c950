"""Operations shared by every ledger, and the one way an app extends them.

Enums with members cannot be subclassed, so an app builds its own ``TextChoices`` from the shared
members followed by its own, with Django's functional API::

    AlphaOperation = extend_operations("AlphaOperation", GAME_WIN="Game win")

The result is a real ``TextChoices`` class (``AlphaOperation.GAME_WIN``,
``AlphaOperation.DAILY_REWARD``, ``.choices``, ``.values``) used by the model field, the
serializers and the OpenAPI schema. Shared members always come first and app members are
appended: never reorder or relabel (it makes a migration).
"""

from __future__ import annotations

import re
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class SharedOperation(models.TextChoices):
    """Operations every ledger has. ``REVERSAL`` is the core's own: only ``reverse_entry`` posts it."""

    DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
    SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
    CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
    CREDIT_ADD = "CREDIT_ADD", _("Credit add")
    REVERSAL = "REVERSAL", _("Reversal")


# The dynamic class is a real TextChoices; typed as Any so that `AlphaOperation.GAME_WIN`
# type-checks (mypy cannot see members made by the functional API).
OperationChoices = Any


def extend_operations(class_name: str, **own: str) -> OperationChoices:
    """Build an app's operation ``TextChoices``: the shared members, then ``own`` (NAME="Label")."""
    members: list[tuple[str, tuple[str, Any]]] = [
        (member.name, (member.value, member.label)) for member in SharedOperation
    ]
    for name, label in own.items():
        if not _NAME.match(name):
            raise ValueError(f"Operation name {name!r} must be UPPER_SNAKE_CASE, at most 64 chars.")
        if name in SharedOperation.names:
            raise ValueError(f"Operation {name!r} is shared already; do not redeclare it.")
        members.append((name, (name, label)))
    return models.TextChoices(class_name, members)  # type: ignore[call-overload]

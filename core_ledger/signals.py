"""Signal receivers; each is one service call."""

from __future__ import annotations

from typing import Any

from core_ledger.services import signup_credits_grant


def grant_signup_credits(
    sender: type[Any], instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """A new user gets the signup credit of every ledger that offers one."""
    if created and not raw:
        signup_credits_grant(user_id=instance.pk)

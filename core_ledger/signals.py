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


def create_trigram_extension(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """Before any migration: ``pg_trgm``, which every entry table's description index needs.

    The shipped apps' migrations create it themselves; a ledger app made later by
    ``startledgerapp`` gets its indexes from ``makemigrations``, which knows nothing of
    extensions. ``pg_trgm`` is trusted (PostgreSQL 13+): no superuser needed.
    """
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

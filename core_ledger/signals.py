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


def install_ledger_functions(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """After a ledger app's migrations: (re)create its lot-drawing debit function.

    The function's SQL comes from the code (:func:`core_ledger.services.lots.
    debit_function_sql`), so every ``migrate`` leaves the database with the version the code
    calls, for the shipped apps and for any app ``startledgerapp`` makes, as Django does for
    content types and permissions. ``CREATE OR REPLACE`` makes it idempotent.
    """
    from django.db import connections, router

    from core_ledger.ledger import registry
    from core_ledger.services.lots import (
        DEBIT_FUNCTION_ARGS,
        debit_function_name,
        debit_function_sql,
    )

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    for ledger in registry:
        if ledger.app_label != getattr(sender, "label", None):
            continue
        if not router.allow_migrate_model(using, ledger.entry_model):
            continue
        with connection.cursor() as cursor:
            # An earlier version with other arguments would be a second function, not replaced.
            cursor.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = %s "
                "AND p.pronamespace = current_schema()::regnamespace "
                "AND pg_get_function_identity_arguments(p.oid) <> %s",
                [debit_function_name(ledger), DEBIT_FUNCTION_ARGS],
            )
            for (older,) in cursor.fetchall():
                cursor.execute(f"DROP FUNCTION IF EXISTS {older}")
            cursor.execute(debit_function_sql(ledger))

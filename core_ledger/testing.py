"""Test helpers for ledger apps (used by the core's suite and by each app's own tests)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation
from core_ledger.selectors import balance_get, username_field
from core_ledger.services import entry_post

_counter = itertools.count(1)


def make_user(*, staff: bool = False, operator: bool = False, **fields: Any) -> Any:
    """A new user (who receives every ledger's signup credit, as real users do).

    Works with any user model whose manager has Django's ``create_user``: the unique
    ``USERNAME_FIELD`` (``username``, ``email``, ...) and the ``EMAIL_FIELD`` get fresh values
    unless given. ``staff`` only opens the admin; ``operator`` makes them an operator of every
    ledger (post any entry, reverse, view all accounts), as ``manage.py ledger_operators`` does.
    """
    User = get_user_model()
    n = next(_counter)
    name = f"user{n}-{id(fields) % 10_000}"
    email_field = User.get_email_field_name()
    has_email = any(f.name == email_field for f in User._meta.get_fields())
    if email_field == username_field():
        fields.setdefault(email_field, f"{name}@example.com")
    else:
        fields.setdefault(username_field(), name)
        if has_email:
            fields.setdefault(email_field, f"{fields[username_field()]}@example.com")
    user = User._default_manager.create_user(  # pyright: ignore[reportAttributeAccessIssue]  # every user manager has it
        password="pw-for-tests", is_staff=staff, **fields
    )
    if operator:
        from core_ledger.ledger import registry
        from core_ledger.services.operators import operator_grant

        for ledger in registry:
            operator_grant(ledger=ledger, user=user)
    return user


def set_balance(*, ledger: AnyLedger, user: AbstractBaseUser, to: int) -> int:
    """Bring ``user``'s balance to exactly ``to`` through the service (credit or spend)."""
    current = balance_get(ledger=ledger, user_id=user.pk)
    if to > current:
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=SharedOperation.CREDIT_ADD,
            amount=to - current,
        )
    elif to < current:
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=SharedOperation.CREDIT_SPEND,
            amount=current - to,
        )
    assert balance_get(ledger=ledger, user_id=user.pk) == to
    return to


def database_url(name: str | None = None) -> str:
    """A ``DATABASE_URL`` for the current connection's server and ``name`` (default: the
    database in use, i.e. the test database inside a test), for subprocesses such as
    ``manage.py`` or gunicorn."""
    from urllib.parse import quote

    from django.db import connection

    params = connection.settings_dict
    auth = quote(params.get("USER") or "", safe="")
    if params.get("PASSWORD"):
        auth += ":" + quote(params["PASSWORD"], safe="")
    host = quote(params.get("HOST") or "", safe="")
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{name or params['NAME']}"


def race(n: int, action: Callable[[int], Any], *, timeout: float = 60) -> list[Any]:
    """Run ``action(i)`` in ``n`` threads released together by a barrier, each on its own
    database connection (closed at the end); return each result, or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = action(i)
        except Exception as exc:  # handed back to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return results


def api_token(user: AbstractBaseUser | int) -> str:
    """A new API token of ``user`` (a user or an id), for ``Authorization: Token <token>``."""
    from core_ledger.services.tokens import token_create

    user_id = user if isinstance(user, int) else int(user.pk)
    return token_create(user_id=user_id).token

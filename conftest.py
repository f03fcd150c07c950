"""Project-wide pytest set-up: the test database, and the ledger invariants after every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("DEBUG", "1")
# Tests raise the token endpoint's rate as make test does; throttle tests set their own.
os.environ.setdefault("API_THROTTLE_LOGIN", "100000/min")
# Webhook receivers in tests listen on 127.0.0.1: allow them in the processes tests start
# (pytest_configure sets the setting of this process).
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "1")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # Hashing test passwords with PBKDF2 would dominate the suite's run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Webhook tests deliver to receivers on 127.0.0.1, and the test runner turns DEBUG off.
    settings.SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> None:
    """Let pytest-django TRUNCATE the throwaway test database (the append-only trigger allows it
    only where this database-level setting is on); UPDATE and DELETE stay refused."""
    from django.db import connection

    from core_ledger.models import ALLOW_TRUNCATE_SETTING

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {name} SET {ALLOW_TRUNCATE_SETTING} = 'on'")
        connection.close()  # the setting applies to new sessions


@pytest.fixture(autouse=True)
def _ledger_invariants_hold(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that can write, every ledger's invariants hold (ledger_check is empty)."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    uses_db = marker is not None or bool({"db", "transactional_db", "live_server"} & names)
    if not uses_db or request.node.get_closest_marker("corrupts_ledger") is not None:
        yield
        return
    transactional = (
        "transactional_db" in names
        or "live_server" in names
        or bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))
    )
    # Requested here so that the database outlives this fixture's check at teardown.
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    from core_ledger.ledger import registry
    from core_ledger.selectors import ledger_check

    problems = [str(d) for ledger in registry for d in ledger_check(ledger=ledger)]
    assert not problems, "ledger invariants broken after the test:\n" + "\n".join(problems)

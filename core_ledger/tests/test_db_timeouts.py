"""Timeouts where they belong: requests get short ones, commands their own, migrations none,
and the options of DATABASE_URL are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from core_ledger.management.base import LONG_STATEMENT_TIMEOUT_MS
from core_ledger.testing import api_token, database_url, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def session_timeouts() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
        )
        statement, lock = cursor.fetchone()
    return str(statement), str(lock)


def fresh_session_timeouts() -> tuple[str, str]:
    connection.close()
    return session_timeouts()


def test_connections_carry_no_request_timeouts() -> None:
    options = settings.DATABASES["default"].get("OPTIONS", {}).get("options", "")
    assert "statement_timeout" not in options and "lock_timeout" not in options
    # What migrate and any command without its own get: the server's defaults, not 30 s / 5 s.
    assert fresh_session_timeouts() == ("0", "0")


def test_requests_run_under_the_request_timeouts() -> None:
    user = make_user()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    connection.close()
    with override_settings(
        SHARED_LEDGER_REQUEST_STATEMENT_TIMEOUT_MS=1234, SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS=567
    ):
        assert client.get("/api/balances/").status_code == 200
        assert session_timeouts() == ("1234ms", "567ms")
        # A persistent connection keeps them; a changed setting is applied on the next request.
        with override_settings(SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS=890):
            assert client.get("/api/balances/").status_code == 200
            assert session_timeouts() == ("1234ms", "890ms")
    connection.close()


def test_long_commands_set_long_timeouts() -> None:
    for command in ("ledger_verify", "ledger_export"):
        connection.close()
        args = ["--ledger", "alpha"] if command == "ledger_export" else []
        call_command(command, *args, stdout=open(os.devnull, "w"))  # noqa: SIM115
        statement, lock = session_timeouts()
        assert statement == f"{LONG_STATEMENT_TIMEOUT_MS // 3_600_000}h", command
        assert lock == "1min", command
    connection.close()


def test_database_url_options_are_kept() -> None:
    options = quote("-c search_path=public -c statement_timeout=4321", safe="")
    env = {**os.environ, "DATABASE_URL": f"{database_url()}?options={options}"}
    script = (
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "c.execute(\"SELECT current_setting('search_path'), current_setting('statement_timeout')\")\n"
        "print(*c.fetchone(), sep='|')\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "public|4321ms"

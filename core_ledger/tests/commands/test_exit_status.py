"""From a shell, a domain error is one line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from core_ledger.testing import database_url


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["ledger_post", "--ledger", "nope", "--user", "x", "--operation", "CREDIT_ADD"],
            "CommandError: Unknown ledger 'nope'. Known ledgers: alpha, beta.",
        ),
        (
            ["ledger_balance", "--ledger", "alpha", "--user", "no-such-user-here"],
            "CommandError: No user with username 'no-such-user-here'.",
        ),
        (
            ["ledger_balance", "--ledger", "alpha", "--user-id", "987654321"],
            "CommandError: No user with id 987654321.",
        ),
    ],
)
def test_command_line_error_is_one_line_and_exit_1(args: list[str], line: str, db: None) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        # The test database: migrated, whatever state the development database is in.
        env={**os.environ, "DEBUG": "1", "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == line
    assert "Traceback" not in done.stderr and done.stdout == ""

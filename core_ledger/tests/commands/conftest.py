"""Helpers for the command tests: run a command the way ``manage.py`` would, capture output."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

Run = Callable[..., tuple[str, str]]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    """make_user hashes a password; the default hasher costs ~0.3 s per user on this machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def run() -> Run:
    """``run("ledger_post", "--ledger", "alpha", ...)`` -> (stdout, stderr)."""

    def _run(name: str, *args: str) -> tuple[str, str]:
        out, err = StringIO(), StringIO()
        call_command(name, *args, stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()

    return _run

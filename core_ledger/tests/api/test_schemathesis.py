"""Property-based run of every operation in /api/schema/ (both ledgers) against the WSGI app.

Schemathesis generates valid and invalid requests from the schema; every response must be
something other than a 5xx and must match the schema documented for its status. It runs in the
normal suite, bounded by ``MAX_EXAMPLES`` per operation and generation mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.throttling import SimpleRateThrottle
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core_ledger.ledger import registry
from core_ledger.testing import make_user, set_balance
from ledger_project.wsgi import application

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@pytest.fixture
def _keep_test_connection() -> Iterator[None]:
    """Calls through the raw WSGI app would close the test's connection (and its transaction)
    at the end of each request; Django's own test client disconnects these handlers the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _run_operation(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases on every run: CI failures reproduce
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Exception as exc:
        exc.add_note(f"operation: {operation.label} ({mode.value})")
        raise


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.usefixtures("_keep_test_connection")
@pytest.mark.parametrize("role", ["user", "staff"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core_ledger.testing import api_token

    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "1000000/min", "anon": "1000000/min"}
    )
    caller = make_user(staff=role == "staff")
    for ledger in registry:
        set_balance(ledger=ledger, user=caller, to=1_000)
    headers = {"Authorization": f"Token {api_token(caller)}"}

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Logging out revokes the caller's token(s): those two run last, after everything else.
    operations.sort(key=lambda op: op.path.startswith("/api/auth/logout"))
    paths = {op.path for op in operations}
    for ledger in registry:  # both ledgers (and any later one) are in the run
        assert f"/api/{ledger.label}/entries/" in paths
    assert len(operations) >= 7 * len(registry)
    negative_runs = 0
    for operation in operations:
        _run_operation(operation, GenerationMode.POSITIVE, headers)
        try:
            _run_operation(operation, GenerationMode.NEGATIVE, headers)
        except Unsatisfiable:
            # Only an operation without inputs (GET /api/ledgers/): no invalid request exists.
            assert not operation.body and not list(operation.query), operation.label
        else:
            negative_runs += 1
    # Without inputs: GET /api/ledgers/, GET /api/balances/, the two logouts.
    assert negative_runs >= len(operations) - 4

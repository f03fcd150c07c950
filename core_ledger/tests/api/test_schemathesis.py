"""The API contract: ``st run <live server>/api/schema/ --checks all``, every phase, finds nothing.

Schemathesis' own CLI runs against a live server on the test database, as a regular user and as
a superuser, over every operation of every ledger: examples, coverage (boundaries and every
documented constraint, both sides), fuzzing (valid and invalid data) and stateful (chains of calls
along the schema's links: post → entry → reverse). Every check is on: no 5xx, every status,
header and body documented, schema-valid requests accepted, schema-violating ones refused.

Deliberate exclusions (business refusals no schema can predict) are in ``schemathesis_hooks``,
each matched by its exact error code and field, and listed in README "API contract".
Bounded: ``MAX_EXAMPLES`` per operation, two workers; about a minute per role.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.ledger import registry
from core_ledger.testing import api_token, make_user, set_balance

MAX_EXAMPLES = 4  # per operation in fuzzing; the coverage phase (most cases) is exhaustive anyway
PHASES = "examples,coverage,fuzzing,stateful"
ROOT = Path(__file__).resolve().parents[3]
ST = Path(sys.executable).with_name("st")


def start_schemathesis(base_url: str, token: str, workdir: Path) -> subprocess.Popen[str]:
    """``st run`` with every check and phase against ``base_url`` as the owner of ``token``."""
    workdir.mkdir()
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "core_ledger.tests.api.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        str(ST),
        "run",
        f"{base_url}/api/schema/",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",  # the same cases on every run: failures reproduce
        # One worker thread: Hypothesis describes filters by parsing their source with `ast`,
        # and CPython 3.11's parser is not thread-safe ("SystemError: AST constructor
        # recursion depth mismatch" from two threads at once). The two roles still run at once.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--header",
        f"Authorization: Token {token}",
        # Logging out revokes the token every other call of the run uses; test_tokens.py
        # drives both logout endpoints and their documented answers.
        "--exclude-path-regex",
        "^/api/auth/logout",
    ]
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_schemathesis_all_checks_all_phases_find_nothing(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "1000000/min", "anon": "1000000/min"}
    )
    callers = {"user": make_user(), "superuser": make_user(is_superuser=True, staff=True)}
    runs = {}
    for role, caller in callers.items():
        for ledger in registry:
            set_balance(ledger=ledger, user=caller, to=1_000_000)
        token = api_token(caller)
        # Both roles at once, against the one live server: half the wall time of one by one.
        runs[role] = start_schemathesis(live_server.url, token, tmp_path / role)

    outputs = {role: run.communicate(timeout=400)[0] for role, run in runs.items()}

    # Per ledger: balance, balances list and one, entries list, one, post and reverse, holds
    # list, one, place, capture and release; plus /api/ledgers/, /api/balances/, /api/events/
    # and the token endpoint.
    expected_operations = 12 * len(registry) + 4
    for role, output in outputs.items():
        summary = output[output.find("SUMMARY") :]
        assert runs[role].returncode == 0, f"{role}:\n{output[-20_000:]}"
        selected = re.search(r"Selected: (\d+)/(\d+)", summary)
        tested = re.search(r"Tested: (\d+)", summary)
        assert selected and tested, f"{role}:\n{summary}"
        # Every operation but the two logouts (left out above) was selected and tested.
        assert int(tested.group(1)) == int(selected.group(1)) == expected_operations, summary
        assert int(selected.group(2)) == expected_operations + 2, summary
        for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
            assert f"✅ {phase}" in summary, f"{role}: {phase} did not pass\n{summary}"
        assert "Failures:" not in summary and "Errors:" not in summary, summary

"""A client generated from ``/api/schema/`` builds, type-checks and drives a full flow.

openapi-python-client generates ``shared_ledger_client`` from the live server's schema into a
temporary folder (never committed); mypy checks the package together with
``generated_client_flow.py``, which then runs against the live server: token, post (with an
idempotency key, replayed), read, reverse, and a fixed-amount post whose body type has no amount.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.ledger import registry
from core_ledger.testing import make_user, set_balance

BIN = Path(sys.executable).parent
FLOW = Path(__file__).with_name("generated_client_flow.py")
PASSWORD = "pw-for-tests"

MYPY_INI = """\
[mypy]
python_version = 3.11
strict_optional = True
warn_unused_ignores = True
check_untyped_defs = True
disallow_untyped_defs = True
ignore_missing_imports = True

# The generator's own client.py template forwards *args: object to httpx's typed __exit__;
# nothing in it comes from our schema.
[mypy-shared_ledger_client.client]
disable_error_code = arg-type
"""


def _run(command: list[str], cwd: Path, timeout: int = 300) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command[:3])}…\n{output[-10_000:]}"
    return output


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_generated_client_builds_type_checks_and_drives_a_flow(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "1000000/min", "anon": "1000000/min"}
    )
    staff = make_user(is_superuser=True, staff=True)
    user = make_user()
    for ledger in registry:
        set_balance(ledger=ledger, user=user, to=0)

    schema_file = tmp_path / "schema.json"
    request = urllib.request.Request(
        f"{live_server.url}/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        schema_file.write_bytes(response.read())

    generated = _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema_file),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "shared_ledger_client"),
        ],
        cwd=tmp_path,
    )
    # Every schema piece became client code: the generator warns about anything it dropped.
    assert "Warning" not in generated and "Unable" not in generated, generated

    shutil.copy(FLOW, tmp_path / FLOW.name)
    (tmp_path / "mypy.ini").write_text(MYPY_INI)
    _run(
        [
            str(BIN / "mypy"),
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "shared_ledger_client",
            FLOW.name,
        ],
        cwd=tmp_path,
    )

    out = _run(
        [
            sys.executable,
            FLOW.name,
            live_server.url,
            staff.username,
            PASSWORD,
            user.username,
            PASSWORD,
            str(user.pk),
        ],
        cwd=tmp_path,
        timeout=120,
    )
    seen = json.loads(out.strip().splitlines()[-1])

    alpha = registry.get("alpha")
    assert seen["entry_user"] == user.pk
    assert seen["replayed"] == "true"
    assert seen["reversal_amount"] == -25
    assert seen["reversal_reverses"] == seen["entry"]
    assert seen["reversed_by"] == seen["reversal"]
    assert seen["reward_operation"] == "DAILY_REWARD"
    assert seen["reward_amount"] == alpha.fixed_amount("DAILY_REWARD")
    entries = alpha.entry_model.objects.filter(user_id=user.pk)
    assert entries.get(pk=seen["entry"]).reversed_by.pk == seen["reversal"]

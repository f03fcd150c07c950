"""startledgerapp validates its input, and the app it generates works in a real project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from ledger_project.devdb import running_url

PROJECT = Path(settings.BASE_DIR)
NOT_COPIED = {
    ".venv",
    ".pgdata",
    ".git",
    "staticfiles",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "results",
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["9lives"], "is not a valid app name"),
        (["app-gamma"], "is not a valid app name"),
        (["app_alpha"], "conflicts with the name of an existing Python module"),
        (["json"], "conflicts with the name of an existing Python module"),
        (["app_alpha2", "--label", "alpha"], "A ledger labelled 'alpha' exists already"),
        (["app_gamma", "--label", "Gamma"], "must be lower_snake_case"),
        (["app_gamma", "--operations", "quiz:credit:staff"], "must be UPPER_SNAKE_CASE"),
        (["app_gamma", "--operations", "QUIZ:sideways:staff"], "direction 'sideways'"),
        (["app_gamma", "--operations", "QUIZ:credit:admin"], "posted_by 'admin'"),
        (["app_gamma", "--operations", "QUIZ:credit"], "must be NAME:direction:posted_by"),
        (["app_gamma", "--operations", "CREDIT_ADD:credit:staff"], "is a shared operation"),
        (
            ["app_gamma", "--operations", "QUIZ:credit:staff,QUIZ:debit:user"],
            "listed twice",
        ),
    ],
)
def test_bad_input_is_refused_before_writing_anything(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("startledgerapp", *args, stdout=StringIO())
    assert list(tmp_path.iterdir()) == []


def test_generates_every_file(tmp_path: Path) -> None:
    target = tmp_path / "app_delta"
    target.mkdir()
    out = StringIO()
    call_command(
        "startledgerapp",
        "app_delta",
        str(target),
        "--operations",
        "STREAK_BONUS:credit:staff, LIVES:debit:user",
        stdout=out,
    )
    files = {str(p.relative_to(target)) for p in target.rglob("*.py")}
    assert files == {
        "__init__.py",
        "admin.py",
        "apps.py",
        "ledger.py",
        "models.py",
        "operations.py",
        "migrations/__init__.py",
        "tests/__init__.py",
        "tests/test_ledger.py",
    }
    for path in target.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # valid Python
    ledger_py = (target / "ledger.py").read_text()
    assert 'label="delta"' in ledger_py
    assert (
        "DeltaOperation.STREAK_BONUS: OperationRule(Direction.CREDIT, PostedBy.STAFF)" in ledger_py
    )
    assert "DeltaOperation.LIVES: OperationRule(Direction.DEBIT, PostedBy.USER)" in ledger_py
    assert 'db_table = "app_delta_entry"' in (target / "models.py").read_text()
    assert "class DeltaConfig(LedgerAppConfig)" in (target / "apps.py").read_text()
    operations_py = (target / "operations.py").read_text()
    assert "class DeltaOperation(LedgerOperation):" in operations_py
    assert 'STREAK_BONUS = "STREAK_BONUS", _("Streak bonus")' in operations_py
    text = out.getvalue()
    assert 'Add "app_delta" to INSTALLED_APPS' in text
    assert "/api/delta/" in text and "makemigrations app_delta" in text
    # Existing users get the new ledger's signup credit by one idempotent command.
    assert "ledger_grant --ledger delta --operation SIGNUP_CREDIT --all-users" in text


def _copy_project(dest: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_COPIED or n.endswith(".pyc")}

    shutil.copytree(PROJECT, dest, ignore=ignore)
    return dest


@pytest.mark.slow
def test_generated_app_passes_its_own_tests_in_a_project_copy(tmp_path: Path) -> None:
    project = _copy_project(tmp_path / "project")
    python = sys.executable
    env = {
        **os.environ,
        "DEBUG": "1",
        # The copy has no embedded server of its own: use this run's server.
        "DATABASE_URL": os.environ.get("DATABASE_URL") or running_url() or "",
        # Its own throwaway test database, apart from this run's.
        "TEST_DATABASE_NAME": os.environ.get("TEST_DATABASE_NAME", "test_shared_ledger")
        + "_startledgerapp",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            args, cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    out = run(
        python,
        "manage.py",
        "startledgerapp",
        "app_gamma",
        "--operations",
        "QUIZ_PASS:credit:staff,HINT:debit:user",
    )
    assert 'Add "app_gamma" to INSTALLED_APPS' in out
    installed_line = '    "app_gamma",'

    settings_py = project / "ledger_project" / "settings.py"
    text = settings_py.read_text()
    assert '    "app_beta",\n' in text
    settings_py.write_text(
        text.replace('    "app_beta",\n', f'    "app_beta",\n{installed_line}\n')
    )

    run(python, "manage.py", "makemigrations", "app_gamma")
    assert (project / "app_gamma" / "migrations" / "0001_initial.py").exists()
    run(python, "manage.py", "makemigrations", "--check", "--dry-run")
    run(python, "manage.py", "check")
    tests = run(python, "-m", "pytest", "app_gamma", "-q", "-p", "no:cacheprovider")
    assert re.search(r"\b7 passed\b", tests), tests
    assert "failed" not in tests and "error" not in tests.lower()
    # make test's plain `pytest` collects the new app with no pytest.ini edit.
    collected = run(python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert "app_gamma/tests/test_ledger.py::" in collected

    ruff = Path(python).with_name("ruff")
    if ruff.exists():  # the generated code (not makemigrations' output) is lint- and format-clean
        generated = [
            str(p.relative_to(project))
            for p in (project / "app_gamma").rglob("*.py")
            if "migrations" not in p.parts or p.name == "__init__.py"
        ]
        run(str(ruff), "check", *generated)
        run(str(ruff), "format", "--check", *generated)

    # The generated app is type-clean under the project's strict mypy and pyright settings.
    run(python, "-m", "mypy", "app_gamma", "--cache-dir", str(tmp_path / "mypy_cache"))
    pyright = Path(python).with_name("pyright")
    run(str(pyright), "--pythonpath", python, "app_gamma")

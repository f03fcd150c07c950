"""mypy and pyright both refuse every mistake in ``mistakes.py`` and accept ``usages.py``.

Each checker runs once, as a subprocess, on both files with the project's own settings
(pyproject.toml: strict, django-stubs plugin for mypy). A mistake is a line marked
``# expect-error``: the test fails if a checker accepts one, or reports an error on an unmarked
line (the mistakes file must fail only where it says it does), or reports any error in
``usages.py`` (whose ``assert_type`` calls state what the typed API must infer).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MISTAKES = HERE / "mistakes.py"
USAGES = HERE / "usages.py"
CHECKED = (MISTAKES, USAGES)
EXPECT_ERROR = re.compile(r"#\s*expect-error\s*$")
MYPY_LINE = re.compile(r"^(?P<path>.+?\.py):(?P<line>\d+):(?:\d+:)? error: (?P<message>.*)$")
# A cold mypy run with the Django plugin takes about a minute on a busy machine.
TIMEOUT_SECONDS = 900

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Report:
    """What one checker said: its error lines per file, and its output for failure messages."""

    checker: str
    errors: dict[Path, dict[int, list[str]]]
    output: str

    def lines(self, path: Path) -> set[int]:
        return set(self.errors.get(path, {}))

    def describe(self, path: Path, lines: set[int]) -> str:
        source = path.read_text().splitlines()
        return "\n".join(
            f"  {path.name}:{n}: {source[n - 1].strip()}\n"
            + "".join(f"      {m}\n" for m in self.errors.get(path, {}).get(n, []))
            for n in sorted(lines)
        )


def expected_lines(path: Path) -> set[int]:
    return {
        number
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if EXPECT_ERROR.search(line)
    }


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # The mypy plugin imports the settings; they need a DATABASE_URL but never connect.
    env.setdefault("DATABASE_URL", "postgres://unused@127.0.0.1:5432/unused")
    env.setdefault("DJANGO_SETTINGS_MODULE", "ledger_project.settings")
    env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"  # no "new version" look-up on PyPI
    env["NO_COLOR"] = "1"
    return env


def _pyright() -> str:
    beside = Path(sys.executable).with_name("pyright")
    found = str(beside) if beside.exists() else shutil.which("pyright")
    if found is None:
        pytest.fail("pyright is not installed: pip install -r requirements-dev.txt")
    return found


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(name: str, process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{name} took over {TIMEOUT_SECONDS}s\n{stdout}\n{stderr}")
    # 0: no errors, 1: errors reported; anything else means the checker itself failed.
    if process.returncode not in (0, 1):
        pytest.fail(f"{name} failed to run (exit {process.returncode})\n{stdout}\n{stderr}")
    return stdout, stderr


def _mypy_report(stdout: str, stderr: str) -> Report:
    errors: dict[Path, dict[int, list[str]]] = {}
    for line in stdout.splitlines():
        match = MYPY_LINE.match(line)
        if match:
            path = (ROOT / match["path"]).resolve()
            errors.setdefault(path, {}).setdefault(int(match["line"]), []).append(match["message"])
    return Report("mypy", errors, stdout + stderr)


def _pyright_config(directory: Path) -> Path:
    """The project's [tool.pyright] settings, checking exactly the two files.

    The project excludes mistakes.py (``make check`` must pass) and pyright honours ``exclude``
    even for files named on its command line, so this run gets a config of its own.
    """
    # Paths in a pyright config are relative to the folder of the file that sets them.
    settings = {
        "extends": os.path.relpath(ROOT / "pyproject.toml", directory),
        "include": [os.path.relpath(p, directory) for p in CHECKED],
        "exclude": [],
        "extraPaths": [os.path.relpath(ROOT, directory)],
    }
    config = directory / "pyrightconfig.json"
    config.write_text(json.dumps(settings, indent=2))
    return config


def _pyright_report(stdout: str, stderr: str) -> Report:
    try:
        report = json.loads(stdout)
        diagnostics = report["generalDiagnostics"]
        analyzed = report["summary"]["filesAnalyzed"]
    except (ValueError, KeyError):
        pytest.fail(f"pyright gave no JSON report\n{stdout}\n{stderr}")
    if analyzed < len(CHECKED):
        pytest.fail(f"pyright analyzed {analyzed} files, not {len(CHECKED)}\n{stdout}\n{stderr}")
    errors: dict[Path, dict[int, list[str]]] = {}
    text = []
    for d in diagnostics:
        if d["severity"] != "error":
            continue
        path = Path(d["file"]).resolve()
        line = d["range"]["start"]["line"] + 1  # pyright counts lines from 0
        message = f"{d['message']} ({d.get('rule', '')})"
        errors.setdefault(path, {}).setdefault(line, []).append(message)
        text.append(f"{path}:{line}: error: {message}")
    return Report("pyright", errors, "\n".join(text) + "\n" + stderr)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Report]]:
    """Both checkers, run side by side once for the module, on both files."""
    cache = tmp_path_factory.mktemp("mypy_cache")
    config = _pyright_config(tmp_path_factory.mktemp("pyright"))
    files = [str(p) for p in CHECKED]
    mypy = _start(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--show-absolute-path",
            "--show-error-codes",
            "--no-pretty",
            "--no-color-output",
            "--no-error-summary",
            *files,
        ]
    )
    pyright = _start([_pyright(), "--outputjson", "--project", str(config)])
    try:
        yield {
            "mypy": _mypy_report(*_finish("mypy", mypy)),
            "pyright": _pyright_report(*_finish("pyright", pyright)),
        }
    finally:
        for process in (mypy, pyright):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_mistakes_file_marks_every_kind_of_mistake() -> None:
    source = MISTAKES.read_text()
    marked = expected_lines(MISTAKES)
    assert len(marked) >= 10, marked
    for mistake in (
        "AlphaOperation.GAME_WINN",  # a misspelt operation
        "operation=BetaOperation.PURCHASE",  # another ledger's operation
        'operation="NOT_AN_OP"',  # a raw string
        "x: int = entry_post(",  # a service result used as something else
        "result.entry.no_such_field",
    ):
        lines = [n for n, line in enumerate(source.splitlines(), 1) if mistake in line]
        assert lines and set(lines) <= marked, f"{mistake!r} is not on a marked line"


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_checker_refuses_every_mistake(checker: str, reports: dict[str, Report]) -> None:
    report = reports[checker]
    expected = expected_lines(MISTAKES)
    found = report.lines(MISTAKES)
    accepted = expected - found
    unexpected = found - expected
    assert not accepted, (
        f"{checker} accepts these mistakes (no error on a line marked expect-error):\n"
        f"{report.describe(MISTAKES, accepted)}\n--- {checker} output ---\n{report.output}"
    )
    assert not unexpected, (
        f"{checker} reports errors on unmarked lines of {MISTAKES.name}:\n"
        f"{report.describe(MISTAKES, unexpected)}\n--- {checker} output ---\n{report.output}"
    )


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_checker_infers_what_the_usages_assert(checker: str, reports: dict[str, Report]) -> None:
    report = reports[checker]
    found = report.lines(USAGES)
    assert not found, (
        f"{checker} rejects correct usages (or infers other types than asserted):\n"
        f"{report.describe(USAGES, found)}\n--- {checker} output ---\n{report.output}"
    )

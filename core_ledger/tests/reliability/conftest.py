"""Fixtures of the reliability suite, and the figures it reports at the end of the run.

Tests record figures (operations run, faults injected, inputs tried) with the ``figures``
fixture; they travel as ``user_properties`` on the test report, so they reach the terminal
summary even when the suite runs under pytest-xdist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_PREFIX = "reliability:"
_collected: list[tuple[str, str, Any]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """``figures(name, value)``: report ``value`` under ``name`` in the run's summary."""

    def record(name: str, value: Any) -> None:
        request.node.user_properties.append((_PREFIX + name, value))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if isinstance(name, str) and name.startswith(_PREFIX):
            _collected.append((report.nodeid.split("::")[-1], name[len(_PREFIX) :], value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _collected:
        return
    terminalreporter.section("reliability figures")
    for test, name, value in _collected:
        terminalreporter.write_line(f"{test}: {name} = {value}")

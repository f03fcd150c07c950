"""Fixtures for the core's rule tests: each runs once per registered ledger."""

from __future__ import annotations

from typing import Any

import pytest

from core_ledger.ledger import AnyLedger, registry
from core_ledger.testing import make_user


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ledger" in metafunc.fixturenames:
        metafunc.parametrize("ledger", registry.labels(), indirect=True)


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> AnyLedger:
    return registry.get(request.param)


@pytest.fixture
def user(db: None) -> Any:
    return make_user()


@pytest.fixture
def other_user(db: None) -> Any:
    return make_user()


@pytest.fixture
def staff(db: None) -> Any:
    return make_user(staff=True, operator=True)

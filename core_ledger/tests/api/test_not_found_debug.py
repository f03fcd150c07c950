"""Under /api/ every refusal is the JSON error shape, DEBUG on or off: no HTML debug page."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from core_ledger.tests.api.conftest import error_code

PATHS = [
    "/api/nope/",
    "/api/gamma/entries/",
    "/api/alpha/entries/1/undo/",
    "/api/alpha/balances/%C2%84/",
    "/api/alpha/entries/%C2%84/",
    "/api/alpha/balances/abc/",
    "/api/alpha/entries/99999999999999999999999/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", PATHS)
def test_unknown_or_malformed_api_path_is_json_404(
    staff_api: APIClient, settings: Any, debug: bool, path: str
) -> None:
    settings.DEBUG = debug
    response = staff_api.get(path)
    assert response.status_code == 404, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert error_code(response) == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_anonymous_unknown_api_path_is_json_404(settings: Any, debug: bool) -> None:
    settings.DEBUG = debug
    response = APIClient().get("/api/does-not-exist/")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


@pytest.mark.django_db
def test_outside_the_api_django_keeps_its_own_404(settings: Any) -> None:
    settings.DEBUG = True
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")

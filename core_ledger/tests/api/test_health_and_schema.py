"""/healthz, /api/schema/ (generated without warnings, one operation enum per ledger), /api/docs/.

The contract itself (every constraint, status and header in the schema) is checked end to end by
``test_schemathesis.py`` and ``test_generated_client.py``; ``test_contract.py`` pins its pieces.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from core_ledger.ledger import PostedBy, registry


@pytest.mark.django_db
def test_healthz_is_anonymous_and_ok() -> None:
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response.headers["Cache-Control"]


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_healthz_is_exempt_from_the_ssl_redirect() -> None:
    client = APIClient()
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/ledgers/").status_code == 301  # everything else is redirected


def test_schema_generates_without_warnings(tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    # --fail-on-warn exits non-zero (SystemExit) on any warning or error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3")


@pytest.mark.django_db
def test_schema_shows_each_ledgers_own_operations() -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    components = schema["components"]["schemas"]
    for ledger in registry:
        prefix = ledger.label.capitalize()
        entries = f"/api/{ledger.label}/entries/"
        assert entries in schema["paths"]
        assert f"/api/{ledger.label}/entries/{{id}}/reverse/" in schema["paths"]
        shown = components[f"{prefix}EntryOperationEnum"]["enum"]
        assert shown == list(ledger.operations.values)
        body = components[f"{prefix}EntryPostRequest"]
        assert body["discriminator"]["propertyName"] == "operation"
        assert list(body["discriminator"]["mapping"]) == [
            op
            for op in ledger.operations.values
            if ledger.rule(op).posted_by is not PostedBy.SYSTEM
        ]
        post = schema["paths"][entries]["post"]
        assert {p["name"] for p in post["parameters"]} >= {"Idempotency-Key"}
        assert {"201", "400", "401", "403", "409", "422", "429"} <= set(post["responses"])
    alpha = components["AlphaEntryOperationEnum"]["enum"]
    beta = components["BetaEntryOperationEnum"]["enum"]
    assert "GAME_WIN" in alpha and "GAME_WIN" not in beta
    assert "PURCHASE" in beta and "PURCHASE" not in alpha


@pytest.mark.django_db
def test_docs_page_is_served() -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()

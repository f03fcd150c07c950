"""The schema says what the server does: the pieces of the contract, one by one.

Each test reads a constraint from ``/api/schema/`` and checks that the server enforces exactly it
(both sides of a boundary), so the schema and the server cannot drift apart silently.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from core_ledger.ledger import AnyLedger, registry
from core_ledger.tests.api.conftest import error_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def url(ledger: AnyLedger, path: str) -> str:
    return f"/api/{ledger.label}/{path}"


def _parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in operation["parameters"] if p["name"] == name)


def _resolve(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]  # type: ignore[no-any-return]


def test_post_body_is_described_per_operation_from_the_ledger_declaration(
    schema: dict[str, Any],
) -> None:
    for ledger in registry:
        post = schema["paths"][f"/api/{ledger.label}/entries/"]["post"]
        assert post["requestBody"]["required"] is True
        body = _resolve(
            schema, post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        for value, ref in body["discriminator"]["mapping"].items():
            shape = _resolve(schema, ref)
            assert shape["properties"]["operation"]["enum"] == [value]
            if ledger.fixed_amount(value) is not None:
                # Fixed amounts: no amount (the server refuses one with 400).
                assert "amount" not in shape["properties"]
                assert shape["not"] == {"required": ["amount"]}
            else:
                assert "amount" in shape["required"]
                amount = shape["properties"]["amount"]
                assert (amount["minimum"], amount["maximum"]) == (1, 10**12)


def test_fixed_and_free_amounts_behave_as_the_schema_says(
    ledger: AnyLedger, api: Any, user: Any
) -> None:
    refused = api.post(
        url(ledger, "entries/"), {"operation": "DAILY_REWARD", "amount": 1}, format="json"
    )
    assert refused.status_code == 400
    assert "amount" in refused.json()["error"]["details"]
    missing = api.post(url(ledger, "entries/"), {"operation": "CREDIT_SPEND"}, format="json")
    assert missing.status_code == 400
    assert "amount" in missing.json()["error"]["details"]


def test_page_size_bounds(schema: dict[str, Any], ledger: AnyLedger, staff_api: Any) -> None:
    for path in ("entries/", "balances/"):
        operation = schema["paths"][f"/api/{ledger.label}/{path}"]["get"]
        bounds = _parameter(operation, "page_size")["schema"]
        assert (bounds["minimum"], bounds["maximum"]) == (1, 500)
        for size, status in (("0", 400), ("1", 200), ("500", 200), ("501", 400), ("", 400)):
            response = staff_api.get(url(ledger, path), {"page_size": size})
            assert response.status_code == status, (path, size)


def test_empty_at_is_refused_as_the_schema_says(
    schema: dict[str, Any], ledger: AnyLedger, api: Any
) -> None:
    at = _parameter(schema["paths"][f"/api/{ledger.label}/balance/"]["get"], "at")
    assert at["schema"]["format"] == "date-time"
    response = api.get(url(ledger, "balance/"), {"at": ""})
    assert response.status_code == 400
    assert error_code(response) == "validation_error"


@pytest.mark.parametrize("name", ["user", "operation", "created_after", "created_before"])
def test_empty_filters_are_refused(ledger: AnyLedger, staff_api: Any, name: str) -> None:
    response = staff_api.get(url(ledger, "entries/"), {name: ""})
    assert response.status_code == 400
    assert name in response.json()["error"]["details"]


def test_idempotency_key_header_pattern_matches_the_server(
    schema: dict[str, Any], ledger: AnyLedger, api: Any, user: Any
) -> None:
    post = schema["paths"][f"/api/{ledger.label}/entries/"]["post"]
    key = _parameter(post, "Idempotency-Key")["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    pattern = re.compile(key["pattern"])
    body = {"operation": "CREDIT_SPEND", "amount": 1}
    for value in ("k", "~" * 255, "a b"):
        assert pattern.fullmatch(value)
        response = api.post(
            url(ledger, "entries/"), body, format="json", HTTP_IDEMPOTENCY_KEY=value
        )
        assert response.status_code == 201, value
    for value in ("x" * 256, "tab\there", "é"):
        assert not pattern.fullmatch(value)


def test_ids_are_bounded_and_a_malformed_path_is_a_json_404(
    schema: dict[str, Any], ledger: AnyLedger, staff_api: Any
) -> None:
    read = schema["paths"][f"/api/{ledger.label}/entries/{{id}}/"]["get"]
    assert _parameter(read, "id")["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**63 - 1,
    }
    for path in ("entries/%C2%84/", "balances/x/", "entries/1/reverse/x/", "nope/"):
        response = staff_api.get(url(ledger, path))
        assert response.status_code == 404, path
        assert error_code(response) == "not_found"
    assert staff_api.post(url(ledger, "entries/-1/reverse/"), {}, format="json").status_code == 404


def test_documented_headers_and_error_statuses(schema: dict[str, Any]) -> None:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            for status in ("429", "503"):
                assert status in responses, (path, method, status)
                assert "Retry-After" in responses[status]["headers"]
                assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith(
                    "/ErrorResponse"
                )
            if operation.get("security") != [{}] and path != "/api/auth/token/":
                assert "WWW-Authenticate" in responses["401"]["headers"]
    for ledger in registry:
        created = schema["paths"][f"/api/{ledger.label}/entries/"]["post"]["responses"]["201"]
        assert "Idempotent-Replayed" in created["headers"]


def test_links_chain_post_entry_reverse(schema: dict[str, Any]) -> None:
    operation_ids = {
        op["operationId"] for methods in schema["paths"].values() for op in methods.values()
    }
    for ledger in registry:
        entries = f"/api/{ledger.label}/entries/"
        links = schema["paths"][entries]["post"]["responses"]["201"]["links"]
        assert {link["operationId"] for link in links.values()} == {
            f"{ledger.label}_entries_retrieve",
            f"{ledger.label}_entries_reverse_create",
        }
        assert operation_ids >= {link["operationId"] for link in links.values()}
        assert all(link["parameters"] == {"id": "$response.body#/id"} for link in links.values())
        reversed_ = schema["paths"][f"{entries}{{id}}/reverse/"]["post"]["responses"]["201"]
        assert "GetEntry" in reversed_["links"]

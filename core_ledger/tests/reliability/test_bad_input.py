"""Malformed requests, table-driven: each gets a 4xx with the documented code in the one error
shape, and writes nothing (every ledger's entries and the callers' balances are compared)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.cache import cache

from core_ledger.ledger import AnyLedger, registry
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import MAX_AMOUNT, entry_post
from core_ledger.tests.reliability.helpers import fast_user, snapshot, token_client

pytestmark = pytest.mark.django_db

SPEND = Op.CREDIT_SPEND


@pytest.fixture(autouse=True)
def _fresh_throttle_history() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@dataclass
class Case:
    name: str
    status: int
    code: str
    path: str = "entries/"  # under /api/<ledger>/ unless it starts with "/"
    method: str = "post"
    body: Any = None  # JSON-encoded
    raw: bytes | str | None = None  # sent as is
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    who: str = "user"  # user | staff | anon | badtoken


def spend(**extra: Any) -> dict[str, Any]:
    return {"operation": SPEND, "amount": 1, **extra}


def cases(ledger: AnyLedger) -> list[Case]:
    foreign_ops = sorted(
        {op for other in registry for op in other.rules if op not in ledger.operation_rules}
    ) or ["NOT_HERE"]
    v, n = "validation_error", "not_found"
    table = [
        # amount: wrong types, beyond 64 bits, zero and negative, non-finite
        Case("amount string", 400, v, body=spend(amount="10")),
        Case("amount float", 400, v, body=spend(amount=10.5)),
        Case("amount float integral", 400, v, body=spend(amount=10.0)),
        Case("amount true", 400, v, body=spend(amount=True)),
        Case("amount false", 400, v, body=spend(amount=False)),
        Case("amount null", 400, v, body=spend(amount=None)),
        Case("amount zero", 400, v, body=spend(amount=0)),
        Case("amount negative", 400, v, body=spend(amount=-5)),
        Case("amount 2**63", 400, v, body=spend(amount=2**63)),
        Case("amount 2**64", 400, v, body=spend(amount=2**64)),
        Case("amount -2**64", 400, v, body=spend(amount=-(2**64))),
        Case("amount 10**40", 400, v, body=spend(amount=10**40)),
        Case("amount above the limit", 400, v, body=spend(amount=MAX_AMOUNT + 1)),
        Case("amount list", 400, v, body=spend(amount=[1])),
        Case("amount object", 400, v, body=spend(amount={"v": 1})),
        Case("amount exponent string", 400, v, body=spend(amount="1e3")),
        Case("amount exponent number", 400, v, raw='{"operation": "CREDIT_SPEND", "amount": 1e3}'),
        Case("amount NaN", 400, v, raw='{"operation": "CREDIT_SPEND", "amount": NaN}'),
        Case("amount Infinity", 400, v, raw='{"operation": "CREDIT_SPEND", "amount": Infinity}'),
        Case("amount missing", 400, v, body={"operation": SPEND}),
        Case(
            "amount on a fixed operation", 400, v, body={"operation": Op.DAILY_REWARD, "amount": 10}
        ),
        # operation
        Case("operation unknown", 400, v, body=spend(operation="HACK")),
        Case("operation lower case", 400, v, body=spend(operation="credit_spend")),
        Case("operation number", 400, v, body=spend(operation=5)),
        Case("operation null", 400, v, body=spend(operation=None)),
        Case("operation missing", 400, v, body={"amount": 1}),
        Case("operation REVERSAL", 400, v, body=spend(operation=Op.REVERSAL)),
        Case("operation SIGNUP_CREDIT", 400, v, body={"operation": Op.SIGNUP_CREDIT}),
        Case("operation of another ledger", 400, v, body=spend(operation=foreign_ops[0])),
        # user
        Case("user string", 400, v, body=spend(user="abc")),
        Case("user numeric string", 400, v, body=spend(user="1")),
        Case("user beyond 64 bits", 400, v, body=spend(user=2**70)),
        Case("user negative", 400, v, body=spend(user=-1)),
        Case("user zero", 400, v, body=spend(user=0)),
        Case("user true", 400, v, body=spend(user=True)),
        Case("user float", 400, v, body=spend(user=1.5)),
        # A regular user learns nothing of other ids: a missing account is refused like a real one.
        Case("user that does not exist", 403, "operation_not_allowed", body=spend(user=2**31 - 1)),
        # description and metadata limits
        Case("description too long", 400, v, body=spend(description="d" * 501)),
        Case("description number", 400, v, body=spend(description=5)),
        Case("description null", 400, v, body=spend(description=None)),
        Case("description NUL", 400, v, body=spend(description="a\u0000b")),
        Case("metadata list", 400, v, body=spend(metadata=["a"])),
        Case("metadata string", 400, v, body=spend(metadata="a")),
        Case("metadata number", 400, v, body=spend(metadata=5)),
        Case(
            "metadata too many keys", 400, v, body=spend(metadata={f"k{i}": i for i in range(21)})
        ),
        Case("metadata key too long", 400, v, body=spend(metadata={"k" * 65: 1})),
        Case("metadata empty key", 400, v, body=spend(metadata={"": 1})),
        Case("metadata value too long", 400, v, body=spend(metadata={"k": "v" * 501})),
        Case(
            "metadata over 4096 bytes",
            400,
            v,
            body=spend(metadata={f"k{i}": "v" * 450 for i in range(10)}),
        ),
        Case("metadata NUL", 400, v, body=spend(metadata={"k": "a\u0000b"})),
        Case(
            "metadata nested 100000 deep",
            400,
            v,
            raw='{"operation": "CREDIT_SPEND", "amount": 1, "metadata": '
            + '{"a": ' * 100_000
            + "1"
            + "}" * 100_000
            + "}",
        ),
        # bodies that are not a JSON object
        Case("invalid JSON", 400, v, raw="{"),
        Case("single-quoted JSON", 400, v, raw="{'operation': 'CREDIT_SPEND', 'amount': 1}"),
        Case("trailing garbage", 400, v, raw='{"operation": "CREDIT_SPEND", "amount": 1}xyz'),
        Case("invalid UTF-8", 400, v, raw=b'{"operation": "\xff\xfe", "amount": 1}'),
        Case("JSON list", 400, v, raw='[{"operation": "CREDIT_SPEND", "amount": 1}]'),
        Case("JSON string", 400, v, raw='"CREDIT_SPEND"'),
        Case("JSON null", 400, v, raw="null"),
        Case("empty body", 400, v, raw=""),
        Case("oversized body", 413, v, raw='{"description": "' + "x" * 3_000_000 + '"}'),
        # content types
        Case(
            "text/plain",
            415,
            "unsupported_media_type",
            raw="operation=CREDIT_SPEND",
            content_type="text/plain",
        ),
        Case(
            "form encoded",
            415,
            "unsupported_media_type",
            raw="operation=CREDIT_SPEND&amount=1",
            content_type="application/x-www-form-urlencoded",
        ),
        Case(
            "multipart",
            415,
            "unsupported_media_type",
            raw='--b\r\nContent-Disposition: form-data; name="operation"\r\n\r\nCREDIT_SPEND\r\n--b--\r\n',
            content_type="multipart/form-data; boundary=b",
        ),
        Case("XML", 415, "unsupported_media_type", raw="<entry/>", content_type="application/xml"),
        # Idempotency-Key header
        Case("key empty", 400, v, body=spend(), headers={"HTTP_IDEMPOTENCY_KEY": ""}),
        Case("key too long", 400, v, body=spend(), headers={"HTTP_IDEMPOTENCY_KEY": "k" * 256}),
        Case("key with a tab", 400, v, body=spend(), headers={"HTTP_IDEMPOTENCY_KEY": "a\tb"}),
        Case("key not ASCII", 400, v, body=spend(), headers={"HTTP_IDEMPOTENCY_KEY": "clé"}),
        Case("key with a newline", 400, v, body=spend(), headers={"HTTP_IDEMPOTENCY_KEY": "a\nb"}),
        # unknown ledger and paths, wrong methods
        Case("unknown ledger post", 404, n, path="/api/gamma/entries/", body=spend()),
        Case("unknown ledger balance", 404, n, path="/api/gamma/balance/", method="get"),
        Case("entry id beyond 64 bits", 404, n, path=f"entries/{2**70}/", method="get"),
        Case("entry id not a number", 404, n, path="entries/abc/", method="get"),
        Case("post to an entry", 405, "method_not_allowed", path="entries/{entry}/", body=spend()),
        Case(
            "put an entry",
            405,
            "method_not_allowed",
            path="entries/{entry}/",
            method="put",
            body=spend(),
        ),
        Case(
            "patch an entry",
            405,
            "method_not_allowed",
            path="entries/{entry}/",
            method="patch",
            body=spend(),
        ),
        Case(
            "delete an entry", 405, "method_not_allowed", path="entries/{entry}/", method="delete"
        ),
        Case("delete the entries", 405, "method_not_allowed", method="delete"),
        # query parameters
        Case("at not a date", 400, v, path="balance/?at=yesterday", method="get"),
        Case("at impossible date", 400, v, path="balance/?at=2026-13-45T00:00:00Z", method="get"),
        Case("at huge number", 400, v, path=f"balance/?at={10**30}", method="get"),
        Case("cursor garbage", 400, v, path="entries/?cursor=garbage", method="get"),
        Case("created_after not a date", 400, v, path="entries/?created_after=soon", method="get"),
        Case("user filter not a number", 400, v, path="entries/?user=abc", method="get"),
        Case("operation filter unknown", 400, v, path="entries/?operation=HACK", method="get"),
        # staff: reversal bodies, unknown entries, missing target
        Case(
            "staff post without user",
            400,
            v,
            who="staff",
            body={"operation": Op.CREDIT_ADD, "amount": 1},
        ),
        Case(
            "staff user as string",
            400,
            v,
            who="staff",
            body={"operation": Op.CREDIT_ADD, "amount": 1, "user": "1"},
        ),
        Case(
            "reverse without reason", 400, v, who="staff", path="entries/{entry}/reverse/", body={}
        ),
        Case(
            "reverse reason number",
            400,
            v,
            who="staff",
            path="entries/{entry}/reverse/",
            body={"reason": 5},
        ),
        Case(
            "reverse reason blank",
            400,
            v,
            who="staff",
            path="entries/{entry}/reverse/",
            body={"reason": "   "},
        ),
        Case(
            "reverse reason too long",
            400,
            v,
            who="staff",
            path="entries/{entry}/reverse/",
            body={"reason": "r" * 501},
        ),
        Case("reverse invalid JSON", 400, v, who="staff", path="entries/{entry}/reverse/", raw="{"),
        Case(
            "reverse form encoded",
            415,
            "unsupported_media_type",
            who="staff",
            path="entries/{entry}/reverse/",
            raw="reason=x",
            content_type="application/x-www-form-urlencoded",
        ),
        Case(
            "reverse unknown entry",
            404,
            n,
            who="staff",
            path="entries/999999999/reverse/",
            body={"reason": "x"},
        ),
        Case(
            "reverse id beyond 64 bits",
            404,
            n,
            who="staff",
            path=f"entries/{2**70}/reverse/",
            body={"reason": "x"},
        ),
        # authentication
        Case("no credentials", 401, "not_authenticated", who="anon", body=spend()),
        Case("bad token", 401, "not_authenticated", who="badtoken", body=spend()),
        Case(
            "malformed authorization",
            401,
            "not_authenticated",
            who="anon",
            body=spend(),
            headers={"HTTP_AUTHORIZATION": "Token a b"},
        ),
    ]
    return table


def _request(client: Any, ledger: AnyLedger, case: Case, entry_id: int) -> Any:
    path = case.path.replace("{entry}", str(entry_id))
    if not path.startswith("/"):
        path = f"/api/{ledger.label}/{path}"
    if case.method == "get":
        return client.get(path, **case.headers)
    if case.raw is not None:
        data: bytes | str = case.raw
    elif case.body is not None:
        data = json.dumps(case.body)
    else:
        data = ""
    return client.generic(
        case.method.upper(), path, data, content_type=case.content_type, **case.headers
    )


def test_malformed_requests_are_4xx_with_the_code_and_write_nothing(
    ledger: AnyLedger, figures: Any
) -> None:
    user, staff = fast_user(), fast_user(staff=True)
    entry = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=10).entry
    from rest_framework.test import APIClient

    clients = {"user": token_client(user), "staff": token_client(staff), "anon": APIClient()}
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    clients["badtoken"] = bad
    table = cases(ledger)
    before = snapshot([user.pk, staff.pk])
    mismatches = []
    for case in table:
        response = _request(clients[case.who], ledger, case, entry.pk)
        try:
            body = response.json()
            code = body["error"]["code"]
            shape_ok = {"code", "message", "details"} <= set(body["error"])
        except (ValueError, KeyError, TypeError):
            code, shape_ok = f"<not the error shape: {response.content[:80]!r}>", False
        if (response.status_code, code) != (case.status, case.code) or not shape_ok:
            mismatches.append(
                f"{case.name}: {response.status_code} {code}, expected {case.status} {case.code}"
            )
        after = snapshot([user.pk, staff.pk])
        if after != before:
            mismatches.append(f"{case.name}: wrote something ({before} -> {after})")
            before = after
    figures("malformed inputs tried", len(table))
    print(f"[{ledger.label}] malformed inputs tried: {len(table)}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("page_size", ["abc", "-1", "0", "501", "100000", "1e3"])
def test_an_odd_page_size_is_a_400_and_writes_nothing(page_size: str) -> None:
    """``page_size`` is a whole number from 1 to 500; anything else is the client's error,
    never a silent default, a cap or a 5xx."""
    ledger = registry.get(registry.labels()[0])
    staff = fast_user(staff=True)
    user = fast_user()
    entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=1)
    before = ledger.entry_model.objects.count()
    response = token_client(staff).get(
        f"/api/{ledger.label}/entries/", {"page_size": page_size, "user": user.pk}
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert "page_size" in response.json()["error"]["details"]
    assert ledger.entry_model.objects.count() == before

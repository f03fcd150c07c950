"""Security over HTTP: object-level and function-level authorization on every endpoint, mass
assignment, idempotency keys scoped per caller, throttling, production settings, no secret in
the repository. Every refusal is checked to have written nothing and revealed nothing."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.ledger import AnyLedger, registry
from core_ledger.operations import SharedOperation as Op
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.tests.reliability.helpers import fast_user, snapshot, token_client

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture(autouse=True)
def _fresh_throttle_history() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def err(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"]), body
    return str(body["error"]["code"])


def staff_only_ops(ledger: AnyLedger) -> list[str]:
    return [op for op, rule in ledger.operation_rules.items() if rule.posted_by.value == "staff"]


@pytest.fixture
def pair(db: None, ledger: AnyLedger) -> tuple[Any, Any, Any]:
    """Users A and B, and one entry of B's with a recognisable description."""
    a, b = fast_user(prefix="alice"), fast_user(prefix="bob")
    secret_entry = entry_post(
        ledger=ledger,
        user_id=b.pk,
        operation=Op.CREDIT_ADD,
        amount=77,
        idempotency_key="bobs-key",
        description="bob-private-note",
        metadata={"bob": "private"},
    ).entry
    return a, b, secret_entry


@pytest.mark.django_db
def test_a_user_can_neither_see_nor_touch_another_users_account(
    ledger: AnyLedger, pair: tuple[Any, Any, Any]
) -> None:
    a, b, secret = pair
    api = token_client(a)
    base = f"/api/{ledger.label}"
    before = snapshot([a.pk, b.pk])

    listing = api.get(f"{base}/entries/")
    assert listing.status_code == 200
    assert {e["user"] for e in listing.json()["results"]} == {a.pk}
    filtered = api.get(f"{base}/entries/", {"user": b.pk})
    assert filtered.status_code in (200, 400, 403)
    if filtered.status_code == 200:
        assert filtered.json()["results"] == []
    detail = api.get(f"{base}/entries/{secret.pk}/")
    assert detail.status_code == 404 and err(detail) == "not_found"
    assert "bob-private-note" not in detail.content.decode()
    mine = api.get(f"{base}/balance/")
    assert mine.status_code == 200 and mine.json()["user"] == a.pk
    assert api.get(f"{base}/balance/", {"user": b.pk}).json()["user"] == a.pk
    for path in (f"{base}/balances/", f"{base}/balances/{b.pk}/"):
        response = api.get(path)
        assert response.status_code == 403 and err(response) == "permission_denied", path
    everywhere = api.get("/api/balances/")
    assert everywhere.status_code == 200
    assert everywhere.json() == {lg.label: balance_get(ledger=lg, user_id=a.pk) for lg in registry}

    # Posting to B's account, whatever the operation, and reversing B's entry: refused.
    for body in (
        {"operation": Op.CREDIT_SPEND, "amount": 5, "user": b.pk},
        {"operation": Op.DAILY_REWARD, "user": b.pk},
    ):
        response = api.post(f"{base}/entries/", body, format="json")
        assert response.status_code == 403 and err(response) == "operation_not_allowed", body
    response = api.post(f"{base}/entries/{secret.pk}/reverse/", {"reason": "x"}, format="json")
    assert response.status_code in (403, 404)
    assert "bob-private-note" not in response.content.decode()
    assert snapshot([a.pk, b.pk]) == before


@pytest.mark.django_db
def test_function_level_authorization(ledger: AnyLedger) -> None:
    user = fast_user()
    api = token_client(user)
    base = f"/api/{ledger.label}"
    own = entry_post(ledger=ledger, user_id=user.pk, operation=Op.CREDIT_ADD, amount=30).entry
    before = snapshot([user.pk])
    for op in staff_only_ops(ledger):
        response = api.post(f"{base}/entries/", {"operation": op, "amount": 5}, format="json")
        assert response.status_code == 403 and err(response) == "operation_not_allowed", op
        response = api.post(
            f"{base}/entries/", {"operation": op, "amount": 5, "user": user.pk}, format="json"
        )
        assert response.status_code == 403 and err(response) == "operation_not_allowed", op
    for op in (Op.SIGNUP_CREDIT, Op.REVERSAL):  # the ledger's own operations
        response = api.post(f"{base}/entries/", {"operation": op}, format="json")
        assert response.status_code in (400, 403), op
    # Reversing even one's own entry is staff work.
    response = api.post(f"{base}/entries/{own.pk}/reverse/", {"reason": "mine"}, format="json")
    assert response.status_code == 403 and err(response) == "operation_not_allowed"
    assert snapshot([user.pk]) == before

    # A service account of this ledger posts anything here, but is nobody in another ledger.
    service = fast_user(prefix="svc")
    app_label, codename = ledger.post_permission.split(".")
    service.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    svc = token_client(service)
    response = svc.post(
        f"{base}/entries/",
        {"operation": Op.CREDIT_ADD, "amount": 4, "user": user.pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    for other in registry:
        if other.label == ledger.label:
            continue
        before_other = snapshot([user.pk])
        response = svc.post(
            f"/api/{other.label}/entries/",
            {"operation": Op.CREDIT_ADD, "amount": 4, "user": user.pk},
            format="json",
        )
        assert response.status_code == 403, response.content
        assert svc.get(f"/api/{other.label}/balances/").status_code == 403
        assert snapshot([user.pk]) == before_other


@pytest.mark.django_db
def test_mass_assignment_changes_nothing_the_server_owns(ledger: AnyLedger) -> None:
    user = fast_user()
    other = fast_user()
    api = token_client(user)
    target = entry_post(ledger=ledger, user_id=other.pk, operation=Op.CREDIT_ADD, amount=9).entry
    start = balance_get(ledger=ledger, user_id=user.pk)
    response = api.post(
        f"/api/{ledger.label}/entries/",
        {
            "operation": Op.CREDIT_SPEND,
            "amount": 5,
            "id": 1,
            "balance_after": 1_000_000,
            "balance": 1_000_000,
            "created_at": "2000-01-01T00:00:00Z",
            "created_by": other.pk,
            "reverses": target.pk,
            "reversed_by": target.pk,
            "idempotency_key": "smuggled",
            "request_fingerprint": "0" * 64,
            "day": "2000-01-01",
            "is_staff": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    stored = ledger.entry_model.objects.get(pk=body["id"])
    assert stored.pk != 1 and stored.balance_after == start - 5 == body["balance_after"]
    assert stored.amount == -5 and stored.user_id == user.pk
    assert stored.created_by_id == user.pk and stored.reverses_id is None
    assert stored.idempotency_key is None and stored.request_fingerprint == ""
    assert stored.created_at.year > 2000 and stored.day.year > 2000
    assert not ledger.entry_model.objects.filter(reverses_id=target.pk).exists()
    user.refresh_from_db()
    assert not user.is_staff


@pytest.mark.django_db
def test_idempotency_keys_are_scoped_to_the_caller(
    ledger: AnyLedger, pair: tuple[Any, Any, Any]
) -> None:
    a, b, _ = pair
    staff = fast_user(staff=True)
    base = f"/api/{ledger.label}/entries/"
    body = {"operation": Op.CREDIT_SPEND, "amount": 5}
    first = token_client(a).post(base, body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    assert first.status_code == 201
    a_entry = first.json()

    # B reusing A's key on B's own account: an independent post.
    own = token_client(b).post(base, body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    assert own.status_code == 201 and "Idempotent-Replayed" not in own.headers
    assert own.json()["user"] == b.pk and own.json()["id"] != a_entry["id"]

    secrets_of_a = [str(a_entry["id"]), str(a_entry["balance_after"])]
    before = snapshot([a.pk, b.pk])
    # B aiming A's key at A's account: refused, and nothing of A's entry comes back.
    stolen = token_client(b).post(
        base, {**body, "user": a.pk}, format="json", HTTP_IDEMPOTENCY_KEY="shared-key"
    )
    assert stolen.status_code == 403 and err(stolen) == "operation_not_allowed"
    assert not any(s in stolen.content.decode() for s in secrets_of_a), stolen.content
    # Even staff replaying A's key for A with A's very request is a different caller: 422.
    replay = token_client(staff).post(
        base, {**body, "user": a.pk}, format="json", HTTP_IDEMPOTENCY_KEY="shared-key"
    )
    assert replay.status_code == 422 and err(replay) == "idempotency_key_reused"
    assert not any(s in replay.content.decode() for s in secrets_of_a), replay.content
    assert snapshot([a.pk, b.pk]) == before
    # A's own retry still replays A's entry.
    again = token_client(a).post(base, body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == a_entry["id"]
    # Another ledger is another scope.
    for other in registry:
        if other.label != ledger.label:
            response = token_client(a).post(
                f"/api/{other.label}/entries/",
                body,
                format="json",
                HTTP_IDEMPOTENCY_KEY="shared-key",
            )
            assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers


@pytest.mark.django_db
def test_throttling_is_429_in_the_error_shape(
    ledger: AnyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "4/min", "anon": "2/min"})
    user = fast_user()
    api = token_client(user)
    before = snapshot([user.pk])
    statuses = [
        api.post(
            f"/api/{ledger.label}/entries/",
            {"operation": Op.CREDIT_SPEND, "amount": 1},
            format="json",
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [201] * 4
    limited = api.post(
        f"/api/{ledger.label}/entries/", {"operation": Op.CREDIT_SPEND, "amount": 1}, format="json"
    )
    assert limited.status_code == 429 and err(limited) == "throttled"
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.json()["error"]["details"]["retry_after"] > 0
    after = snapshot([user.pk])
    assert after.counts[ledger.label] == before.counts[ledger.label] + 4  # not 5


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _production_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "ALLOWED_HOSTS"}
    }
    # A shared cache, as production has (a process-local one is warning core_ledger.W001).
    env.update(
        DEBUG="0",
        ALLOWED_HOSTS="ledger.example.com",
        CACHE_URL="redis://127.0.0.1:6379/5",
        **extra,
    )
    return env


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings() -> None:
    assert not (BASE_DIR / ".env").exists() or "SECRET_KEY" not in (BASE_DIR / ".env").read_text()
    result = _manage(
        _production_env(SECRET_KEY=secrets.token_urlsafe(50)),
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr
    # The same settings module refuses to start without a real SECRET_KEY when DEBUG is off.
    missing = _manage(_production_env(), "check")
    assert missing.returncode != 0
    assert "SECRET_KEY must be set" in missing.stderr
    # ... and the deploy check catches a weak key.
    weak = _manage(
        _production_env(SECRET_KEY="short"), "check", "--deploy", "--fail-level", "WARNING"
    )
    assert weak.returncode != 0 and "security.W009" in weak.stdout + weak.stderr


PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
TOKENS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"gh[pousr]_[A-Za-z0-9]{36}"),  # GitHub token
    re.compile(r"xox[abpr]-[A-Za-z0-9-]{10,}"),  # Slack token
    re.compile(r"sk_live_[A-Za-z0-9]{16,}"),  # Stripe live key
]
SECRET_ASSIGNMENT = re.compile(
    r"""(?i)\b(SECRET_KEY|PASSWORD|API_KEY|TOKEN)\b\s*[:=]\s*["']?([A-Za-z0-9_\-+/=!@#%^&*]{24,})"""
)
PLACEHOLDER = re.compile(r"(?i)insecure|not-?secret|change-?me|example|dummy|test|dev|local")


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=BASE_DIR, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        return [BASE_DIR / p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a checkout: the tree, minus caches
        skip = {".venv", ".pgdata", ".git", "node_modules", "staticfiles", "__pycache__"}
        return [p for p in BASE_DIR.rglob("*") if p.is_file() and not skip & set(p.parts)]


def test_no_secret_is_committed() -> None:
    files = _tracked_files()
    assert files
    names = {p.relative_to(BASE_DIR).as_posix() for p in files}
    assert ".env" not in names, ".env is committed"
    found = []
    for path in files:
        if path.name == ".env.example" or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if PRIVATE_KEY.search(text):
            found.append(f"{path}: private key")
        for pattern in TOKENS:
            if pattern.search(text):
                found.append(f"{path}: {pattern.pattern}")
        for match in SECRET_ASSIGNMENT.finditer(text):
            if not PLACEHOLDER.search(match.group(2)) and "$" not in match.group(0):
                found.append(f"{path}: {match.group(1)}={match.group(2)[:6]}…")
    assert not found, found


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_production_server_redirects_to_https_and_sends_security_headers() -> None:
    """gunicorn with DEBUG off and the SSL redirect on (the production default): plain HTTP is
    redirected except /healthz; behind a TLS proxy, responses carry HSTS and the other headers;
    errors show no debug page."""
    import httpx
    from django.db import connection

    from core_ledger.tests.reliability.helpers import GunicornServer

    env = {"SECURE_SSL_REDIRECT": "1", "USE_X_FORWARDED_PROTO": "1"}
    with (
        GunicornServer(connection.settings_dict["NAME"], workers=1, extra_env=env) as server,
        httpx.Client(base_url=server.base_url, timeout=20, follow_redirects=False) as http,
    ):
        health = http.get("/healthz")
        assert health.status_code == 200  # exempt: load balancers probe over plain HTTP
        plain = http.get("/api/ledgers/")
        assert plain.status_code == 301
        assert plain.headers["Location"].startswith("https://127.0.0.1")
        proxied = http.get("/api/ledgers/", headers={"X-Forwarded-Proto": "https"})
        assert proxied.status_code == 401
        assert proxied.headers["WWW-Authenticate"].startswith("Token")
        assert "max-age=31536000" in proxied.headers["Strict-Transport-Security"]
        assert proxied.headers["X-Content-Type-Options"] == "nosniff"
        assert proxied.headers["X-Frame-Options"] == "DENY"
        missing = http.get("/no-such-page/", headers={"X-Forwarded-Proto": "https"})
        assert missing.status_code == 404
        assert "Traceback" not in missing.text and "DEBUG" not in missing.text
        api_missing = http.get("/api/nope/", headers={"X-Forwarded-Proto": "https"})
        assert api_missing.status_code == 404
        assert api_missing.json()["error"]["code"] == "not_found"

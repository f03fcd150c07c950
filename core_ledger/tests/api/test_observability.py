"""What operators see: one structured log line per request, ``/metrics``, ``/readyz``."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation
from core_ledger.request_log import JsonFormatter
from core_ledger.tests.api.conftest import PASSWORD, token_client, url

pytestmark = pytest.mark.django_db

METRICS_TOKEN = "metrics-secret-for-tests-0123456789"


def _broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def _broken_db(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1/0")
    return HttpResponse("unreachable")


# This module is also the URLconf of the 5xx tests: the project's URLs plus views that fail.
urlpatterns = [
    path("broken", _broken),
    path("broken-db", _broken_db),
    path("", include("ledger_project.urls")),
]


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r)) for r in caplog.records if r.name == "core_ledger.requests"
    ]


def _metrics(client: Client | APIClient | None = None) -> dict[tuple[str, tuple[Any, ...]], float]:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(metrics: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


# --- the request log -------------------------------------------------------------------------------


def test_a_post_is_one_json_line_with_id_user_status_and_duration(
    ledger: AnyLedger, staff: Any, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core_ledger.requests")
    response = token_client(staff).post(
        url(ledger, "entries/"),
        {"user": user.pk, "operation": SharedOperation.CREDIT_ADD.value, "amount": 5},
        format="json",
        HTTP_X_REQUEST_ID="trace-abc.123",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "trace-abc.123"
    [line] = _lines(caplog)
    assert line["level"] == "INFO"
    assert line["request_id"] == "trace-abc.123"
    assert line["user_id"] == staff.pk
    assert line["method"] == "POST"
    assert line["path"] == url(ledger, "entries/")
    assert line["status"] == 201
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert "code" not in line
    assert line["db"] == ["default"]


def test_a_request_id_is_generated_when_missing_or_unsafe(
    user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core_ledger.requests")
    client = token_client(user)
    plain = client.get("/api/ledgers/")
    forged = client.get("/api/ledgers/", HTTP_X_REQUEST_ID='x" level="ERROR\nfake line')
    ids = [plain["X-Request-ID"], forged["X-Request-ID"]]
    assert all(len(i) == 32 and i.isalnum() for i in ids), ids
    assert ids[0] != ids[1]
    assert [line["request_id"] for line in _lines(caplog)] == ids


def test_a_refusal_is_info_with_its_code(
    ledger: AnyLedger, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core_ledger.requests")
    response = token_client(user).post(
        url(ledger, "entries/"),
        {"user": user.pk, "operation": SharedOperation.CREDIT_SPEND.value, "amount": 10**9},
        format="json",
    )
    assert response.status_code == 409
    anonymous = APIClient().get("/api/ledgers/")
    assert anonymous.status_code == 401
    spend, anon = _lines(caplog)
    assert (spend["level"], spend["status"], spend["code"]) == ("INFO", 409, "insufficient_credits")
    assert (anon["level"], anon["status"], anon["code"], anon["user_id"]) == (
        "INFO",
        401,
        "not_authenticated",
        None,
    )


@override_settings(ROOT_URLCONF=__name__)
def test_a_5xx_is_error_with_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="core_ledger.requests")
    response = Client(raise_request_exception=False).get("/broken")
    assert response.status_code == 500
    [line] = _lines(caplog)
    assert line["level"] == "ERROR"
    assert line["status"] == 500
    assert "RuntimeError: a bug in a view" in line["traceback"]
    assert response["X-Request-ID"] == line["request_id"]


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_URLCONF=__name__)
def test_a_database_error_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = _metrics()
    response = Client(raise_request_exception=False).get("/broken-db")
    assert response.status_code == 500
    after = _metrics()
    name = "ledger_database_errors_total"
    assert _value(after, name, code="server_error") == _value(before, name, code="server_error") + 1


def test_no_token_password_or_secret_reaches_the_log(
    ledger: AnyLedger, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = APIClient()
    issued = client.post(
        "/api/auth/token/",
        {"username": user.username, "password": PASSWORD},
        format="json",
        HTTP_X_METRICS_TOKEN=METRICS_TOKEN,
    )
    assert issued.status_code in (200, 201), issued.content
    token = issued.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(url(ledger, "balance/") + f"?password={PASSWORD}").status_code == 200
    wrong = APIClient().post(
        "/api/auth/token/", {"username": user.username, "password": "wrong-pw-xyz"}, format="json"
    )
    assert wrong.status_code == 400
    Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert "core_ledger.requests" in text
    for secret in (token, PASSWORD, "wrong-pw-xyz", METRICS_TOKEN):
        assert secret not in text


# --- /metrics --------------------------------------------------------------------------------------


def test_metrics_need_the_token_or_an_allowed_address() -> None:
    assert Client().get("/metrics").status_code == 403
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403 and b"ledger_" not in wrong.content
    with override_settings(SHARED_LEDGER_METRICS_TOKEN=""):
        # An empty token opens nothing, even for an empty bearer.
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    with override_settings(SHARED_LEDGER_METRICS_ADDRESSES=["10.0.0.0/8"]):
        assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
        assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 403


@pytest.fixture(autouse=True)
def _metrics_token(settings: Any) -> None:
    settings.SHARED_LEDGER_METRICS_TOKEN = METRICS_TOKEN


def test_posts_replays_and_refusals_are_counted_with_latency(ledger: AnyLedger, user: Any) -> None:
    before = _metrics()
    client = token_client(user)
    claim = {"user": user.pk, "operation": SharedOperation.DAILY_REWARD.value}
    assert client.post(url(ledger, "entries/"), claim, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    assert client.post(url(ledger, "entries/"), claim, HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    assert client.post(url(ledger, "entries/"), claim).status_code == 409
    spend = {"user": user.pk, "operation": "NO_SUCH_OP", "amount": 1}
    assert client.post(url(ledger, "entries/"), spend).status_code == 400
    after = _metrics()
    label, op = ledger.label, SharedOperation.DAILY_REWARD.value

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    posts = "ledger_posts_total"
    assert grew(posts, ledger=label, operation=op, outcome="posted") == 1
    assert grew(posts, ledger=label, operation=op, outcome="replayed") == 1
    assert grew(posts, ledger=label, operation=op, outcome="already_claimed") == 1
    assert grew(posts, ledger=label, operation="invalid", outcome="validation_error") == 1
    assert grew("ledger_idempotent_replays_total", ledger=label) == 1
    assert grew("ledger_post_duration_seconds_count", ledger=label) == 4
    assert grew("ledger_post_duration_seconds_bucket", ledger=label, le="+Inf") == 4


def test_throttled_requests_are_counted(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/min", "anon": "1000/min"})
    before = _metrics()
    client = token_client(user)
    statuses = [client.get("/api/ledgers/").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    after = _metrics()
    name = "ledger_throttled_requests_total"
    assert _value(after, name, scope="user") - _value(before, name, scope="user") == 2


def test_unexpired_lots_are_a_gauge_read_at_scrape_time(ledger: AnyLedger, staff: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    def gauge() -> float:
        return _value(_metrics(), "ledger_unexpired_lots", ledger=ledger.label)

    before = gauge()
    response = token_client(staff).post(
        url(ledger, "entries/"),
        {
            "user": staff.pk,
            "operation": SharedOperation.CREDIT_ADD.value,
            "amount": 7,
            "expires_at": (timezone.now() + timedelta(days=1)).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert gauge() == before + 1


# --- /readyz ---------------------------------------------------------------------------------------


def test_readyz_checks_database_migrations_and_cache() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": True, "migrations": True, "cache": True},
    }
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_is_503_when_the_cache_does_not_answer() -> None:
    # A real Redis client against a port nothing listens on.
    dead = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": "redis://127.0.0.1:1/0"}}  # fmt: skip
    with override_settings(CACHES=dead):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] is False

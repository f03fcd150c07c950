"""Signing and verifying, the URL rules, ledger_webhook and ledger_deliver arguments, and the
admin pages of endpoints, attempts (resend) and events."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

from core_ledger.exceptions import ValidationFailed
from core_ledger.models import Event, WebhookDelivery, WebhookEndpoint
from core_ledger.services.webhooks import (
    backoff_after,
    webhook_endpoint_create,
    webhook_url_clean,
)
from core_ledger.testing import make_user
from core_ledger.tests.events.receiver import Receiver, running
from core_ledger.tests.events.util import wait_until_final
from core_ledger.webhooks import sign, signature, verify

SECRET = "whsec_test"
BODY = b'{"id": 1, "type": "entry.posted"}'


# --- signing -------------------------------------------------------------------------------------


def test_a_signature_verifies_and_nothing_else_does() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={signature(SECRET, 1_700_000_000, BODY)}"
    now = 1_700_000_100.0
    assert verify(SECRET, {"Ledger-Signature": header}, BODY, now=now)
    assert verify(SECRET, {"ledger-signature": header}, BODY, now=now)  # any header case
    assert not verify(SECRET, {"Ledger-Signature": header}, BODY + b" ", now=now)
    assert not verify("other", {"Ledger-Signature": header}, BODY, now=now)
    assert not verify(SECRET, {"Ledger-Signature": header}, BODY, now=now + 300)  # too old
    assert verify(SECRET, {"Ledger-Signature": header}, BODY, tolerance=1000, now=now + 300)
    assert not verify(SECRET, {}, BODY, now=now)
    for bad in ("", "t=1700000000", "v1=abc", "t=x,v1=abc", "garbage"):
        assert not verify(SECRET, {"Ledger-Signature": bad}, BODY, now=now)
    rotated = header + ",v1=" + "0" * 64
    assert verify(SECRET, {"Ledger-Signature": rotated}, BODY, now=now)


def test_the_backoff_grows_then_gives_up() -> None:
    delays = [backoff_after(n) for n in range(1, 8)]
    assert [d.total_seconds() for d in delays[:6] if d] == [10, 60, 600, 3600, 21600, 86400]
    assert delays[6] is None


# --- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "example.com/hook", "http://", "https:///path", "http://a b.com/", ""],
)
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        webhook_url_clean(url)
    assert "url" in info.value.details


@override_settings(DEBUG=False, SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "https://10.1.2.3/",
        "http://192.168.0.5/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://0.0.0.0/",
    ],
)
def test_private_addresses_are_refused_in_production(url: str) -> None:
    with pytest.raises(ValidationFailed, match="WEBHOOK_ALLOW_PRIVATE"):
        webhook_url_clean(url)


@override_settings(DEBUG=False, SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE=False)
def test_public_addresses_pass_in_production() -> None:
    assert webhook_url_clean("https://93.184.215.14/hook") == "https://93.184.215.14/hook"


@override_settings(DEBUG=False, SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE=True)
def test_webhook_allow_private_lets_them_through() -> None:
    assert webhook_url_clean("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


# --- commands ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_webhook_add_list_disable_enable_remove() -> None:
    out = StringIO()
    call_command(
        "ledger_webhook",
        "add",
        "https://shop.example.com/hooks",
        "--events",
        "entry.posted",
        "--ledgers",
        "alpha,beta,alpha",
        stdout=out,
    )
    text = out.getvalue()
    endpoint_id = int(re.search(r"endpoint (\d+):", text).group(1))  # type: ignore[union-attr]
    secret = re.search(r"^secret: (whsec_[0-9a-f]{64})$", text, re.M).group(1)  # type: ignore[union-attr]
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    assert endpoint.secret == secret
    assert (endpoint.event_types, endpoint.ledgers, endpoint.active) == (
        ["entry.posted"],
        ["alpha", "beta"],
        True,
    )
    out = StringIO()
    call_command("ledger_webhook", "list", stdout=out)
    assert f"{endpoint_id}\tactive\thttps://shop.example.com/hooks" in out.getvalue()
    assert secret not in out.getvalue()
    call_command("ledger_webhook", "disable", str(endpoint_id), stdout=StringIO())
    assert not WebhookEndpoint.objects.get(pk=endpoint_id).active
    call_command("ledger_webhook", "enable", str(endpoint_id), stdout=StringIO())
    assert WebhookEndpoint.objects.get(pk=endpoint_id).active
    call_command("ledger_webhook", "remove", str(endpoint_id), stdout=StringIO())
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "ftp://x.example/"], "validation_error"),
        (["add", "https://x.example/", "--events", "entry.deleted"], "Unknown event_types"),
        (["add", "https://x.example/", "--ledgers", "gamma"], "Unknown ledgers"),
        (["disable", "999"], "not_found"),
        (["remove", "999"], "not_found"),
        (["enable", "999"], "not_found"),
    ],
)
def test_ledger_webhook_refusals(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("ledger_webhook", *args, stdout=StringIO())
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "args",
    [["--concurrency", "0"], ["--batch-size", "0"], ["--batch-size", "1001"], ["--interval", "0"]],
)
def test_ledger_deliver_refuses_bad_arguments(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("ledger_deliver", "--once", *args, stdout=StringIO())


def test_a_new_endpoint_starts_after_the_events_handed_out(transactional_db: Any) -> None:
    make_user()
    wait_until_final()
    created = webhook_endpoint_create(url="https://x.example/")
    last = Event.objects.order_by("xid", "id").last()
    assert last is not None and created.endpoint.cursor_id == last.id
    assert (
        webhook_endpoint_create(url="https://x.example/", from_start=True).endpoint.cursor_id == 0
    )


# --- admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_admin_shows_failing_endpoints_and_resends_attempts() -> None:
    admin = Client()
    admin.force_login(make_user(staff=True, is_superuser=True))
    with running(Receiver(secrets={})) as receiver:
        created = webhook_endpoint_create(url=receiver.url + "/hook", from_start=True)
        receiver.secrets = {"/hook": created.secret}
        event = Event.objects.order_by("id").first()
        assert event is not None
        WebhookEndpoint.objects.filter(pk=created.endpoint.pk).update(
            failing=True, failing_since=timezone.now(), last_error="HTTP 500"
        )
        failed = WebhookDelivery.objects.create(
            endpoint=created.endpoint,
            event=event,
            attempt=1,
            status_code=500,
            error="HTTP 500",
            created_at=timezone.now(),
        )
        page = admin.get("/admin/core_ledger/webhookendpoint/")
        assert page.status_code == 200 and b"FAILING" in page.content
        assert admin.get("/admin/core_ledger/webhookdelivery/").status_code == 200
        assert admin.get(f"/admin/core_ledger/event/{event.pk}/change/").status_code == 200
        response = admin.post(
            "/admin/core_ledger/webhookdelivery/",
            {"action": "resend", "_selected_action": [failed.pk]},
            follow=True,
        )
        assert b"Resent 1: 1 acknowledged." in response.content
        assert receiver.acknowledged("/hook") == [event.id]
        assert all(r.valid for r in receiver.requests)
        retry = WebhookDelivery.objects.get(endpoint=created.endpoint, attempt=2)
        assert retry.success and retry.status_code == 200
        response = admin.post(
            "/admin/core_ledger/webhookendpoint/",
            {"action": "resume", "_selected_action": [created.endpoint.pk]},
            follow=True,
        )
        assert not WebhookEndpoint.objects.get(pk=created.endpoint.pk).failing


@pytest.mark.django_db
def test_admin_add_shows_the_secret_once() -> None:
    admin = Client()
    admin.force_login(make_user(staff=True, is_superuser=True))
    response = admin.post(
        "/admin/core_ledger/webhookendpoint/add/",
        {
            "url": "https://hooks.example.com/in",
            "event_types": "",
            "ledgers": "beta",
            "active": "on",
        },
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret.encode() in response.content
    assert endpoint.ledgers == ["beta"]
    page = admin.get(f"/admin/core_ledger/webhookendpoint/{endpoint.pk}/change/")
    assert endpoint.secret.encode() not in page.content
    bad = admin.post(
        "/admin/core_ledger/webhookendpoint/add/",
        {"url": "https://hooks.example.com/in", "event_types": "nope", "ledgers": ""},
    )
    assert bad.status_code == 200 and b"Unknown event_types" in bad.content
    assert WebhookEndpoint.objects.count() == 1

"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signatures, retries with
backoff, per-endpoint order, failing endpoints, concurrent workers, a SIGKILLed worker."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from core_ledger.ledger import registry
from core_ledger.models import Event, WebhookDelivery, WebhookEndpoint
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post, grant_bulk
from core_ledger.services.webhooks import endpoint_deliver, webhook_endpoint_create
from core_ledger.testing import database_url, make_user
from core_ledger.tests.events.receiver import Receiver, flaky, running
from core_ledger.tests.events.util import wait_until_final

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = override_settings(
    SHARED_LEDGER_WEBHOOK_BACKOFF=[0.01] * 30, SHARED_LEDGER_WEBHOOK_TIMEOUT=0.3
)
ROOT = Path(__file__).resolve().parents[3]


def post_some(n: int) -> None:
    users = [make_user() for _ in range(3)]
    alpha, beta = registry.get("alpha"), registry.get("beta")
    for i in range(n):
        ledger = alpha if i % 2 else beta
        entry_post(ledger=ledger, user_id=users[i % 3].pk, operation=Op.CREDIT_ADD, amount=i + 1)


def event_ids(*, ledger: str | None = None, after: int = 0) -> list[int]:
    events = Event.objects.filter(id__gt=after).order_by("xid", "id")
    if ledger:
        events = events.filter(ledger=ledger)
    return list(events.values_list("id", flat=True))


def drain(done: Any, *, seconds: float = 300, **options: Any) -> None:
    # Generous: a transaction elsewhere on a shared server holds the feed back while it runs.
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the worker did not drain in time"
        call_command("ledger_deliver", "--once", stdout=StringIO(), **options)
        time.sleep(0.02)


@FAST_RETRIES
def test_every_event_arrives_signed_despite_failures_and_slow_answers() -> None:
    wait_until_final()  # endpoints start after the events the feed has handed out
    with running(Receiver(secrets={})) as receiver:
        receiver.decide = flaky(random.Random(13), slow=0.6)
        everything = webhook_endpoint_create(url=receiver.url + "/all")
        only_beta = webhook_endpoint_create(url=receiver.url + "/beta", ledgers=["beta"])
        receiver.secrets = {"/all": everything.secret, "/beta": only_beta.secret}
        start = everything.endpoint.cursor_id
        post_some(24)
        expected_all = event_ids(after=start)
        expected_beta = event_ids(ledger="beta", after=start)
        assert len(expected_all) > 24  # signup credits of the new users too

        def done() -> bool:
            return set(expected_all) <= set(receiver.acknowledged("/all")) and set(
                expected_beta
            ) <= set(receiver.acknowledged("/beta"))

        drain(done, concurrency=2, batch_size=7)
    assert receiver.requests and all(r.valid for r in receiver.requests)
    assert all(r.event_id == r.body_id for r in receiver.requests)
    statuses = {r.status for r in receiver.requests}
    assert 500 in statuses  # the failures happened, and were retried
    for path, expected in (("/all", expected_all), ("/beta", expected_beta)):
        acked = receiver.acknowledged(path)
        first_acks = list(dict.fromkeys(acked))
        assert first_acks == expected  # per endpoint, in feed order
    log = WebhookDelivery.objects.filter(endpoint=everything.endpoint)
    assert log.filter(success=False, status_code=500).exists()
    assert log.filter(success=False, status_code__isnull=True, error__startswith="timeout").exists()
    assert set(log.filter(success=True).values_list("event_id", flat=True)) == set(expected_all)
    endpoint = WebhookEndpoint.objects.get(pk=everything.endpoint.pk)
    assert (endpoint.attempts, endpoint.failing, endpoint.next_attempt_at) == (0, False, None)


@override_settings(SHARED_LEDGER_WEBHOOK_BACKOFF=[0.01, 0.01], SHARED_LEDGER_WEBHOOK_TIMEOUT=1)
def test_a_failing_endpoint_is_marked_and_never_delays_the_others() -> None:
    wait_until_final()  # endpoints start after the events the feed has handed out
    with running(Receiver(secrets={})) as receiver:
        receiver.decide = lambda n, path: (503, 0.0) if path == "/down" else (200, 0.0)
        down = webhook_endpoint_create(url=receiver.url + "/down")
        up = webhook_endpoint_create(url=receiver.url + "/up")
        receiver.secrets = {"/down": down.secret, "/up": up.secret}
        post_some(6)
        expected = event_ids(after=up.endpoint.cursor_id)
        drain(lambda: set(expected) <= set(receiver.acknowledged("/up")), concurrency=2)
        for _ in range(5):
            time.sleep(0.03)
            call_command("ledger_deliver", "--once", stdout=StringIO())
        endpoint = WebhookEndpoint.objects.get(pk=down.endpoint.pk)
        assert endpoint.failing and endpoint.failing_since is not None
        assert endpoint.last_error == "HTTP 503"
        # One event was tried 3 times (the first try and two retries), then nothing more.
        tried = list(
            WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event_id", "attempt")
        )
        assert sorted(tried) == [(expected[0], 1), (expected[0], 2), (expected[0], 3)]
        assert receiver.acknowledged("/up") == expected
        # An operator resumes it once the receiver is back: everything goes out, in order.
        receiver.decide = lambda n, path: (200, 0.0)
        out = StringIO()
        call_command("ledger_webhook", "enable", str(endpoint.pk), stdout=out)
        drain(lambda: receiver.acknowledged("/down") == expected)


def test_workers_at_once_never_deliver_to_one_endpoint_concurrently() -> None:
    wait_until_final()  # endpoints start after the events the feed has handed out
    with running(Receiver(secrets={})) as receiver:
        receiver.decide = lambda n, path: (200, 0.002)
        created = [webhook_endpoint_create(url=f"{receiver.url}/e{i}") for i in range(2)]
        receiver.secrets = {f"/e{i}": c.secret for i, c in enumerate(created)}
        users = [make_user() for _ in range(5)]
        grant_bulk(
            ledger=registry.get("alpha"),
            operation=Op.CREDIT_ADD,
            user_ids=[u.pk for u in users],
            amount=1,
            idempotency_key="w",
        )
        expected = event_ids(after=created[-1].endpoint.cursor_id)
        wait_until_final()
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(40):
                    for c in created:
                        endpoint_deliver(endpoint_id=c.endpoint.pk, batch_size=2)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
    for i in range(2):
        assert receiver.max_in_flight[f"/e{i}"] == 1
        assert receiver.acknowledged(f"/e{i}") == expected  # each once, in order


def test_a_worker_killed_mid_delivery_loses_nothing() -> None:
    wait_until_final()  # endpoints start after the events the feed has handed out
    with running(Receiver(secrets={})) as receiver:
        in_flight = threading.Event()
        counter = itertools.count(1)

        def decide(n: int, path: str) -> tuple[int, float]:
            if next(counter) == 7:  # the 2nd event of the worker's 2nd batch
                in_flight.set()
                return 200, 30.0  # held until the worker is dead
            return 200, 0.0

        receiver.decide = decide
        created = webhook_endpoint_create(url=receiver.url + "/hook")
        receiver.secrets = {"/hook": created.secret}
        post_some(12)
        expected = event_ids(after=created.endpoint.cursor_id)
        wait_until_final()  # the worker's first batch is then the first five
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DEBUG": "1",
            "WEBHOOK_BACKOFF": "0.05",
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "ledger_deliver",
                "--batch-size",
                "5",
                "--interval",
                "0.05",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert in_flight.wait(60), "the worker never reached the 7th delivery"
            os.kill(worker.pid, signal.SIGKILL)
            assert worker.wait(30) == -signal.SIGKILL
        finally:
            if worker.poll() is None:
                worker.kill()
        # The first batch (5 events) was recorded; the 6th was acknowledged but its batch never
        # committed, the 7th was in flight: both go out again.
        endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
        assert endpoint.cursor_id == expected[4]
        assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 5
        receiver.decide = lambda n, path: (200, 0.0)
        drain(lambda: set(expected) <= set(receiver.acknowledged("/hook")))
    acked = receiver.acknowledged("/hook")
    assert list(dict.fromkeys(acked)) == expected
    assert acked.count(expected[5]) == 2  # at least once: delivered again after the kill
    assert all(r.valid for r in receiver.requests)


def test_the_worker_stops_cleanly_on_sigterm() -> None:
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "1"}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "ledger_deliver", "--interval", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # started, and idling between rounds
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "events delivered" in out


@override_settings(SHARED_LEDGER_WEBHOOK_BACKOFF=[60], SHARED_LEDGER_WEBHOOK_TIMEOUT=1)
def test_a_host_that_resolves_to_a_private_address_at_delivery_is_not_sent_to() -> None:
    """DNS rebinding: the URL passed its check when it was added (here allowed, as in a
    DEBUG setup); by delivery, with private addresses refused, its name resolves to
    127.0.0.1. The worker resolves it again, sends nothing, and records why."""
    from core_ledger.services.webhooks import Sender

    wait_until_final()
    with running(Receiver(secrets={})) as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        made = webhook_endpoint_create(url=f"http://localhost:{port}/hook")
        post_some(1)
        with override_settings(DEBUG=False, SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE=False):
            run = endpoint_deliver(endpoint_id=made.endpoint.pk)
        assert receiver.requests == []
        assert run.delivered == 0
        attempt = WebhookDelivery.objects.get(endpoint=made.endpoint)
        assert not attempt.success and attempt.status_code is None
        assert "private" in attempt.error and "127.0.0.1" in attempt.error
        # The sender checks again what it connects to, and connects to the address it checked:
        # no window between the check above and the connection for the name to change.
        with override_settings(DEBUG=False, SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE=False):
            sent = Sender(made.endpoint.url, 1).post(b'{"id": 1}', {})
        assert not sent.ok and sent.status_code is None
        assert sent.error.startswith("PrivateAddressRefused") and "127.0.0.1" in sent.error
        # Allowed again (WEBHOOK_ALLOW_PRIVATE=1, the tests' setting) and resumed: it goes out.
        receiver.secrets = {"/hook": made.secret}
        call_command("ledger_webhook", "enable", str(made.endpoint.pk), stdout=StringIO())
        expected = event_ids(after=made.endpoint.cursor_id)
        drain(lambda: receiver.acknowledged("/hook") == expected, seconds=60)
        assert all(r.valid for r in receiver.requests)


def test_a_pinned_connection_goes_to_the_checked_address_with_the_url_host_name() -> None:
    """The socket opens to the address that was checked, not to what the name resolves to
    now; the request still names the URL's host."""
    from core_ledger.services.webhooks import PinnedHTTPConnection

    seen: list[str] = []
    with running(Receiver(secrets={})) as receiver:
        receiver.decide = lambda n, path: (204, 0.0)
        port = int(receiver.url.rsplit(":", 1)[1])
        original = receiver.handle

        def handle(path: str, headers: Any, body: bytes) -> int:
            seen.append(headers.get("Host", ""))
            return original(path, headers, body)

        receiver.handle = handle  # type: ignore[method-assign]
        # A name that resolves nowhere: only the pinned address can reach the receiver.
        conn = PinnedHTTPConnection("hooks.invalid", port, timeout=2)
        conn.pinned = "127.0.0.1"
        conn.request("POST", "/p", body=b'{"id": 1}', headers={"Host": "hooks.invalid"})
        assert conn.getresponse().status == 204
        conn.close()
    assert seen == ["hooks.invalid"]

"""Webhook endpoints and the delivery of events to them (the only code that writes those tables).

Delivery, per endpoint, in feed order, at least once:

- A worker takes a **session-level advisory lock** per endpoint (``pg_try_advisory_lock``), so
  several workers never deliver to one endpoint at once; a worker that does not get it moves on
  to the next endpoint. The lock is not a row lock inside a transaction on purpose: an open
  transaction holding an id during the HTTP calls would hold back the feed's ``xmin``
  (:func:`core_ledger.feed.event_page`) and stall every reader. A killed worker's session ends,
  and PostgreSQL drops its lock.
- Under the lock it reads the endpoint afresh (the cursor another worker may have moved), takes
  the next events after its cursor from the feed, and POSTs them one by one (keep-alive), each
  signed (:mod:`core_ledger.webhooks`). The first failure stops the batch: later events wait,
  so the endpoint sees its events in order.
- Then one short transaction records every attempt and moves the cursor past the events
  acknowledged (2xx). A worker killed before that commit leaves the cursor where it was: those
  events go out again (at least once; receivers drop duplicates by ``Ledger-Event-Id``).
- A failure schedules the next try after ``WEBHOOK_BACKOFF`` (10 s, 1 min, 10 min, 1 h, 6 h,
  24 h); when the schedule runs out the endpoint is marked failing and waits for an operator.
  A failing or slow endpoint only occupies its own turn: the others are due on their own and
  run in other threads (``ledger_deliver --concurrency``).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, connections, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from core_ledger import feed
from core_ledger.conf import app_settings
from core_ledger.exceptions import LedgerError, ValidationFailed
from core_ledger.ledger import registry
from core_ledger.models import Event, WebhookDelivery, WebhookEndpoint
from core_ledger.triggers import EVENT_TYPES
from core_ledger.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, sign

ADVISORY_LOCK_CLASS = 0x5E1E  # the first key of pg_try_advisory_lock(int, int): "webhook endpoint"
USER_AGENT = "shared-ledger-webhooks/1"
MAX_URL_LENGTH = 2000
RESEND_LIMIT = 50


class WebhookNotFound(LedgerError):
    code = "not_found"
    status = 404
    default_message = "No such webhook endpoint."


# --- endpoints -----------------------------------------------------------------------------------


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to now (OSError when it resolves to none)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return _resolve(host, port)
    except (OSError, UnicodeError):
        raise ValidationFailed(
            f"Cannot resolve {host!r}.", url=[f"Cannot resolve {host!r}."]
        ) from None


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Private, loopback, link-local, reserved or multicast: refused without
    ``WEBHOOK_ALLOW_PRIVATE``."""
    return not address.is_global or address.is_multicast


def webhook_url_clean(url: str) -> str:
    """``url`` if it may receive webhooks: http(s), a host, and (with ``DEBUG`` off, unless
    ``WEBHOOK_ALLOW_PRIVATE``) no private, loopback, link-local or reserved address."""

    def refuse(message: str) -> ValidationFailed:
        return ValidationFailed(message, url=[message])

    url = (url or "").strip()
    if not url or len(url) > MAX_URL_LENGTH or any(ord(c) < 33 for c in url):
        raise refuse(f"A URL of 1 to {MAX_URL_LENGTH} characters, without spaces.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("Not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("Webhook URLs must be http:// or https://.")
    host = parts.hostname
    if not host:
        raise refuse("The URL has no host.")
    if not app_settings.WEBHOOK_ALLOW_PRIVATE:
        for address in _addresses(host, port or (443 if parts.scheme == "https" else 80)):
            if _not_public(address):
                raise refuse(
                    f"{host} is a private, loopback or reserved address ({address}); "
                    "set WEBHOOK_ALLOW_PRIVATE=1 to allow it."
                )
    return url


def _clean_list(values: Iterable[str], known: Sequence[str], field: str) -> list[str]:
    cleaned: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if value not in known:
            message = f"Unknown {field} {value!r}; known: {', '.join(known)}."
            raise ValidationFailed(message, **{field: [message]})
        if value not in cleaned:
            cleaned.append(value)
    return cleaned


def webhook_event_types_clean(values: Iterable[str]) -> list[str]:
    """Known event types, without duplicates; empty means every type."""
    return _clean_list(values, EVENT_TYPES, "event_types")


def webhook_ledgers_clean(values: Iterable[str]) -> list[str]:
    """Known ledger labels, without duplicates; empty means every ledger."""
    return _clean_list(values, registry.labels(), "ledgers")


def webhook_secret_new() -> str:
    """A new signing secret: 256 random bits."""
    return "whsec_" + secrets.token_hex(32)


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once: the caller prints it


def webhook_endpoint_create(
    *,
    url: str,
    event_types: Iterable[str] = (),
    ledgers: Iterable[str] = (),
    from_start: bool = False,
) -> CreatedEndpoint:
    """A new active endpoint and its secret. It receives the events handed out from now on
    (``from_start``: every event since the first)."""
    endpoint = WebhookEndpoint(
        url=webhook_url_clean(url),
        event_types=webhook_event_types_clean(event_types),
        ledgers=webhook_ledgers_clean(ledgers),
        secret=webhook_secret_new(),
    )
    start = feed.Position() if from_start else feed.feed_head()
    endpoint.cursor_xid, endpoint.cursor_id = start.xid, start.id
    endpoint.save(using=feed.events_db_alias())
    return CreatedEndpoint(endpoint=endpoint, secret=endpoint.secret)


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.using(feed.events_db_alias()).get(pk=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise WebhookNotFound(f"No webhook endpoint {endpoint_id}.") from None


def webhook_endpoint_set_active(*, endpoint_id: int, active: bool) -> WebhookEndpoint:
    """Pause (``active=False``) or resume an endpoint; resuming also clears its failing state
    and retries the event at its cursor at once."""
    endpoint = _endpoint(endpoint_id)
    endpoint.active = active
    fields = ["active"]
    if active:
        endpoint.failing, endpoint.failing_since = False, None
        endpoint.attempts, endpoint.next_attempt_at = 0, None
        fields += ["failing", "failing_since", "attempts", "next_attempt_at"]
    endpoint.save(update_fields=fields)
    return endpoint


def webhook_endpoints_resume(*, endpoint_ids: Sequence[int]) -> int:
    """Clear the failing state of these endpoints and make them due now."""
    return (
        WebhookEndpoint.objects.using(feed.events_db_alias())
        .filter(pk__in=list(endpoint_ids))
        .update(active=True, failing=False, failing_since=None, attempts=0, next_attempt_at=None)
    )


def webhook_endpoint_remove(*, endpoint_id: int) -> None:
    """Delete an endpoint and its delivery log."""
    _endpoint(endpoint_id).delete()


# --- one HTTP delivery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    ok: bool
    status_code: int | None
    error: str
    duration_ms: int


class PrivateAddressRefused(OSError):
    """At delivery, the endpoint's host resolved to an address it may not be sent to."""


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``pinned`` (an address already checked) instead of resolving the host again,
    so that a name cannot resolve to a public address when checked and to a private one when
    connected to (DNS rebinding). ``Host``, and for HTTPS the SNI name and the certificate
    check, still use the URL's host name."""

    pinned: str | None = None

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned or self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PinnedHTTPSConnection(http.client.HTTPSConnection, PinnedHTTPConnection):
    """HTTPS over :class:`PinnedHTTPConnection`'s socket (its ``connect`` wraps the one the
    pinned connect opened, with the host name for SNI and certificate checks)."""


def _pinned_address(host: str, port: int) -> str:
    """The address to connect to: the host resolved now, every one of its addresses public
    (an endpoint's name may resolve elsewhere since it was added)."""
    addresses = _resolve(host, port)
    for address in addresses:
        if _not_public(address):
            raise PrivateAddressRefused(
                f"{host} now resolves to a private, loopback or reserved address ({address}); "
                "not sent (WEBHOOK_ALLOW_PRIVATE=1 allows it)"
            )
    return str(addresses[0])


class Sender:
    """POSTs to one URL over one kept-alive connection (reopened when the server closes it).

    Without ``WEBHOOK_ALLOW_PRIVATE`` each new connection resolves the host, refuses it when
    any of its addresses is not public, and connects to the address it checked.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.netloc = parts.netloc.rpartition("@")[2]
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            cls = PinnedHTTPSConnection if self.https else PinnedHTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout)
            if not app_settings.WEBHOOK_ALLOW_PRIVATE:
                conn.pinned = _pinned_address(self.host, conn.port)
            self.conn = conn
            self.used = False
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, body: bytes, headers: dict[str, str]) -> Attempt:
        started = time.monotonic()
        for retry in (False, True):
            reused = self.used
            try:
                conn = self._connection()
                conn.request("POST", self.path, body=body, headers={"Host": self.netloc, **headers})
                self.used = True
                response = conn.getresponse()
                response.read(65536)  # the body is not used; reading it frees the connection
                if response.will_close:
                    self.close()
                status = response.status
                ok = 200 <= status < 300
                return Attempt(ok, status, "" if ok else f"HTTP {status}", _ms(started))
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and not retry:
                    continue  # the server closed an idle kept-alive connection: one fresh try
                return Attempt(False, None, _describe(exc), _ms(started))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.close()
                return Attempt(False, None, _describe(exc), _ms(started))
        raise AssertionError("unreachable")  # pragma: no cover


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timeout after {app_settings.WEBHOOK_TIMEOUT:g} s"
    return f"{type(exc).__name__}: {exc}"[:500]


def event_bodies(events: Sequence[Event]) -> list[bytes]:
    """The JSON bodies of deliveries: each event as the feed shows it."""
    return [json.dumps(item, separators=(",", ":")).encode() for item in feed.render_events(events)]


def _headers(endpoint: WebhookEndpoint, event: Event, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: str(event.id),
        SIGNATURE_HEADER: sign(endpoint.secret, body),
    }


def backoff_after(attempt: int) -> timedelta | None:
    """How long to wait after the ``attempt``-th failed try of an event; None: give up."""
    schedule = app_settings.WEBHOOK_BACKOFF
    if attempt > len(schedule):
        return None
    return timedelta(seconds=schedule[attempt - 1])


# --- the worker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointRun:
    """What one turn on one endpoint did."""

    endpoint_id: int
    locked: bool  # False: another worker had it
    delivered: int = 0
    failed: bool = False
    more: bool = False  # a full batch went out: more may be waiting


def _try_lock(alias: str, endpoint_id: int) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_CLASS, endpoint_id])
        row = cursor.fetchone()
    return bool(row and row[0])


def _unlock(alias: str, endpoint_id: int) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_LOCK_CLASS, endpoint_id])


def endpoint_deliver(
    *,
    endpoint_id: int,
    batch_size: int = 100,
    on_attempt: Callable[[Event, Attempt], None] | None = None,
) -> EndpointRun:
    """Deliver the next events (at most ``batch_size``) to one endpoint, if it is due and no
    other worker has it. Never inside a transaction while a request is in flight."""
    alias = feed.events_db_alias()
    if connections[alias].in_atomic_block:
        raise RuntimeError("endpoint_deliver must not run inside a transaction")
    if not _try_lock(alias, endpoint_id):
        return EndpointRun(endpoint_id, locked=False)
    try:
        return _deliver_locked(alias, endpoint_id, batch_size, on_attempt)
    finally:
        _unlock(alias, endpoint_id)


def _deliver_locked(
    alias: str,
    endpoint_id: int,
    batch_size: int,
    on_attempt: Callable[[Event, Attempt], None] | None,
) -> EndpointRun:
    endpoint = WebhookEndpoint.objects.using(alias).filter(pk=endpoint_id).first()
    now = timezone.now()
    if (
        endpoint is None
        or not endpoint.active
        or endpoint.failing
        or (endpoint.next_attempt_at is not None and endpoint.next_attempt_at > now)
    ):
        return EndpointRun(endpoint_id, locked=True)
    page = feed.event_page(
        after=feed.Position(endpoint.cursor_xid, endpoint.cursor_id),
        ledgers=endpoint.ledgers,
        types=endpoint.event_types,
        limit=batch_size,
    )
    if not page.events:
        return EndpointRun(endpoint_id, locked=True)
    records: list[WebhookDelivery] = []
    acknowledged: Event | None = None
    failure: tuple[int, datetime | None, str] | None = None
    attempt_no = endpoint.attempts + 1
    refused = Attempt(False, None, "", 0)
    try:
        url_ok = webhook_url_clean(endpoint.url)
    except ValidationFailed as exc:
        url_ok = ""
        refused = Attempt(False, None, exc.message, 0)
    sender = Sender(url_ok, app_settings.WEBHOOK_TIMEOUT) if url_ok else None
    bodies = event_bodies(page.events)
    try:
        for event, body in zip(page.events, bodies, strict=True):
            at = timezone.now()
            if sender is None:
                result = refused
            else:
                result = sender.post(body, _headers(endpoint, event, body))
            if on_attempt is not None:
                on_attempt(event, result)
            record = WebhookDelivery(
                endpoint_id=endpoint.pk,
                event_id=event.id,
                attempt=attempt_no,
                status_code=result.status_code,
                error=result.error,
                success=result.ok,
                duration_ms=result.duration_ms,
                created_at=at,
            )
            records.append(record)
            if result.ok:
                acknowledged = event
                attempt_no = 1
                continue
            delay = backoff_after(attempt_no)
            record.next_attempt_at = at + delay if delay is not None else None
            failure = (attempt_no, record.next_attempt_at, result.error)
            break
    finally:
        if sender is not None:
            sender.close()
    delivered = sum(1 for r in records if r.success)
    updates: dict[str, Any] = {}
    if acknowledged is not None:
        updates.update(
            cursor_xid=acknowledged.xid,
            cursor_id=acknowledged.id,
            delivered=F("delivered") + delivered,
        )
    if failure is None:
        updates.update(attempts=0, next_attempt_at=None)
    else:
        attempts, next_at, error = failure
        updates.update(attempts=attempts, next_attempt_at=next_at, last_error=error)
        if next_at is None:
            updates.update(failing=True, failing_since=timezone.now())
    try:
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                # Losing this commit in a crash only sends these events again (at least once).
                cursor.execute("SET LOCAL synchronous_commit TO off")
            WebhookDelivery.objects.using(alias).bulk_create(records)
            WebhookEndpoint.objects.using(alias).filter(pk=endpoint.pk).update(**updates)
    except IntegrityError:
        # The endpoint was removed meanwhile (its log goes with it).
        return EndpointRun(endpoint_id, locked=True)
    return EndpointRun(
        endpoint_id,
        locked=True,
        delivered=delivered,
        failed=failure is not None,
        more=failure is None and len(page.events) == batch_size,
    )


def due_endpoint_ids(*, now: datetime | None = None) -> list[int]:
    """Active, not failing endpoints whose next try is due."""
    now = now or timezone.now()
    return list(
        WebhookEndpoint.objects.using(feed.events_db_alias())
        .filter(active=True, failing=False)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _run_in_thread(endpoint_id: int, batch_size: int) -> EndpointRun:
    try:
        return endpoint_deliver(endpoint_id=endpoint_id, batch_size=batch_size)
    finally:
        connections.close_all()  # this thread's connections only


def deliver_round(
    *, batch_size: int = 100, concurrency: int = 4, pool: ThreadPoolExecutor | None = None
) -> list[EndpointRun]:
    """One turn on every due endpoint (in ``pool``'s threads when given, else here)."""
    ids = due_endpoint_ids()
    if pool is None or concurrency <= 1 or len(ids) <= 1:
        return [endpoint_deliver(endpoint_id=i, batch_size=batch_size) for i in ids]
    return list(pool.map(lambda i: _run_in_thread(i, batch_size), ids))


# --- resending -----------------------------------------------------------------------------------


def webhook_resend(*, delivery_ids: Sequence[int]) -> list[WebhookDelivery]:
    """Send the events of these attempts to their endpoints once more, now (an operator's
    "resend"; at most 50). Each try is logged as a new attempt; cursors do not move."""
    alias = feed.events_db_alias()
    chosen = list(
        WebhookDelivery.objects.using(alias)
        .filter(pk__in=list(delivery_ids)[:RESEND_LIMIT])
        .select_related("event", "endpoint")
        .order_by("pk")
    )
    done: list[WebhookDelivery] = []
    for old in chosen:
        endpoint, event = old.endpoint, old.event
        try:
            url = webhook_url_clean(endpoint.url)
        except ValidationFailed as exc:
            result = Attempt(False, None, exc.message, 0)
        else:
            sender = Sender(url, app_settings.WEBHOOK_TIMEOUT)
            [body] = event_bodies([event])
            try:
                result = sender.post(body, _headers(endpoint, event, body))
            finally:
                sender.close()
        last = (
            WebhookDelivery.objects.using(alias)
            .filter(endpoint=endpoint, event=event)
            .aggregate(n=Max("attempt"))["n"]
            or 0
        )
        done.append(
            WebhookDelivery.objects.using(alias).create(
                endpoint=endpoint,
                event=event,
                attempt=last + 1,
                status_code=result.status_code,
                error=result.error,
                success=result.ok,
                duration_ms=result.duration_ms,
                created_at=timezone.now(),
            )
        )
    return done

"""Prometheus metrics of the ledger, and the ``/metrics`` view that exposes them.

Counters and histograms are prometheus-client's. Under gunicorn with several workers, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the server starts: every worker then
writes its figures there and a scrape of any worker adds them all up (``gunicorn.conf.py`` clears
the directory at start and marks dead workers). Without it (``runserver``, tests) the figures are
the process's own.

State gauges (how many lots are unexpired, ...) are not counted as things happen: they are read
from the database at scrape time, on a replica when one is usable. **Adding one** (open holds,
undelivered events): write a function that returns prometheus-client metric families and register
it with :func:`register_state_gauge`, e.g.::

    from prometheus_client.core import GaugeMetricFamily
    from core_ledger.metrics import register_state_gauge

    @register_state_gauge
    def open_holds() -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("ledger_open_holds", "Pending holds.", labels=["ledger"])
        for ledger in registry:
            family.add_metric([ledger.label], count_of_pending_holds(ledger))
        return [family]
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core_ledger.conf import app_settings

logger = logging.getLogger(__name__)

# prometheus-client's metric families (GaugeMetricFamily, CounterMetricFamily, ...).
Families = Iterable[GaugeMetricFamily]

POSTS = Counter(
    "ledger_posts",
    "Entry posts through the API, by ledger, operation and outcome (posted, replayed, or the "
    "refusal's error code).",
    ["ledger", "operation", "outcome"],
)
POST_SECONDS = Histogram(
    "ledger_post_duration_seconds",
    "Time of an entry post through the API, from the parsed request to the entry or refusal.",
    ["ledger"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REPLAYS = Counter(
    "ledger_idempotent_replays",
    "Posts answered from an earlier post with the same Idempotency-Key.",
    ["ledger"],
)
THROTTLED = Counter(
    "ledger_throttled_requests",
    "Requests refused with 429 throttled, by who was counted (user, anon, login).",
    ["scope"],
)
DATABASE_ERRORS = Counter(
    "ledger_database_errors",
    "Requests that failed on the database: database_unavailable (lost connection, timeout), "
    "ledger_busy (lock wait), server_error (a database error nobody translated).",
    ["code"],
)
REQUESTS = Counter(
    "ledger_http_requests",
    "Requests served, by method and status.",
    ["method", "status"],
)
REPLICA_FALLBACKS = Counter(
    "ledger_replica_fallbacks",
    "Lag-tolerant reads sent to the primary because a replica was down, lagging or failed.",
    ["alias", "reason"],
)


@dataclass
class PostOutcome:
    """Filled in by the caller of :func:`observe_post`."""

    outcome: str = "error"


@contextmanager
def observe_post(*, ledger: str, operation: str) -> Generator[PostOutcome]:
    """Count one post and time it; the caller sets ``outcome`` (``posted`` or ``replayed``).
    An exception leaving the block is counted under its ``code`` (``server_error`` without one)."""
    result = PostOutcome()
    started = time.perf_counter()
    try:
        yield result
    except Exception as exc:
        from core_ledger.api.errors import error_code_of

        result.outcome = error_code_of(exc)
        raise
    finally:
        POST_SECONDS.labels(ledger=ledger).observe(time.perf_counter() - started)
        POSTS.labels(ledger=ledger, operation=operation, outcome=result.outcome).inc()
        if result.outcome == "replayed":
            REPLAYS.labels(ledger=ledger).inc()


# --- state gauges, read at scrape time -----------------------------------------------------------

StateGauge = Callable[[], Families]
_state_gauges: list[StateGauge] = []


def register_state_gauge(fn: StateGauge) -> StateGauge:
    """Add ``fn`` to the gauges read at every scrape (a decorator). ``fn`` runs inside
    :func:`core_ledger.routing.lag_tolerant`, so its queries go to a replica when one is usable;
    a database error in it drops its gauges from that scrape (logged), not the whole scrape."""
    _state_gauges.append(fn)
    return fn


@register_state_gauge
def unexpired_lots() -> Families:
    """Lots with credits left that have not expired, and those credits, per ledger."""
    from core_ledger.ledger import registry
    from core_ledger.routing import current_replica
    from core_ledger.services.sql import quote_name

    lots = GaugeMetricFamily(
        "ledger_unexpired_lots", "Lots with credits left and not expired.", labels=["ledger"]
    )
    credits = GaugeMetricFamily(
        "ledger_unexpired_lot_credits", "Credits left in unexpired lots.", labels=["ledger"]
    )
    for ledger in registry:
        table = quote_name(ledger.lot_model._meta.db_table)
        alias = current_replica() or ledger.db_alias
        with connections[alias].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*), coalesce(sum(remaining), 0) FROM {table} "
                "WHERE remaining > 0 AND expires_at > now()"
            )
            count, total = cursor.fetchone()
        lots.add_metric([ledger.label], float(count))
        credits.add_metric([ledger.label], float(total))
    return [lots, credits]


def _families(gauge: StateGauge) -> list[GaugeMetricFamily]:
    return list(gauge())


class _StateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from core_ledger.routing import lag_tolerant

        for gauge in _state_gauges:
            try:
                families = lag_tolerant(partial(_families, gauge))
            except DatabaseError:
                logger.warning("State gauge %s failed", gauge.__name__, exc_info=True)
                continue
            yield from families


# --- the view --------------------------------------------------------------------------------------


def _allowed(request: HttpRequest) -> bool:
    token = app_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    address = request.META.get("REMOTE_ADDR", "")
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    for allowed in app_settings.METRICS_ADDRESSES:
        try:
            if client in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every worker's counters, then the state gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    state = CollectorRegistry()
    state.register(_StateCollector())
    return counted + generate_latest(state)


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics``: with ``Authorization: Bearer <METRICS_TOKEN>`` or from a configured
    address; anyone else gets a 403 that says nothing of the figures."""
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)

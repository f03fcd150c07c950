"""``/healthz``: 200 when the database answers ``SELECT 1``, 503 when it does not (liveness).
``/readyz``: also every migration applied and the cache answering (readiness).

A plain Django view, outside DRF: anonymous, never throttled, exempt from the SSL redirect
(``SECURE_REDIRECT_EXEMPT``), so a load balancer can probe the process directly.
"""

from __future__ import annotations

import logging
import uuid

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


def database_answers() -> bool:
    """True when one round trip to the database succeeds."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return bool(cursor.fetchone() == (1,))
    except DatabaseError:
        logger.warning("Health check: the database does not answer", exc_info=True)
        return False


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    if database_answers():
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "database_unavailable"}, status=503)


_migrated = False


def migrations_applied() -> bool:
    """True when every migration on disk is applied (remembered once true: they stay applied)."""
    global _migrated
    if not _migrated:
        from django.db.migrations.executor import MigrationExecutor

        try:
            executor = MigrationExecutor(connection)
            _migrated = not executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError:
            logger.warning("Readiness: cannot read the applied migrations", exc_info=True)
            return False
    return _migrated


def cache_answers() -> bool:
    """True when the cache (Redis in production: throttles live there) stores and returns."""
    from django.core.cache import cache

    key = f"core_ledger:readyz:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", 10)
        ok = bool(cache.get(key) == "1")
        cache.delete(key)
        return ok
    except Exception:  # any backend's connection error: the cache is not ready, not a 500
        logger.warning("Readiness: the cache does not answer", exc_info=True)
        return False


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """``/readyz``: 200 when the database answers, every migration is applied and the cache
    answers; 503 with the failing checks otherwise. ``/healthz`` stays the liveness check."""
    checks = {
        "database": database_answers(),
        "migrations": False,
        "cache": cache_answers(),
    }
    checks["migrations"] = checks["database"] and migrations_applied()
    ready = all(checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "not_ready", "checks": checks}, status=200 if ready else 503
    )

"""``/healthz``: 200 when the database answers ``SELECT 1``, 503 when it does not.

A plain Django view, outside DRF: anonymous, never throttled, exempt from the SSL redirect
(``SECURE_REDIRECT_EXEMPT``), so a load balancer can probe the process directly.
"""

from __future__ import annotations

import logging

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

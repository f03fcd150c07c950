"""The core's URLs, ready to include in a host project's URLconf::

    # urls.py of the host project
    from django.urls import include, path

    urlpatterns = [
        ...,
        path("", include("core_ledger.urls")),  # /api/..., /healthz, /readyz, /metrics
    ]
    handler404 = "core_ledger.urls.handler404"  # optional: JSON 404s under /api/

Or mount the pieces yourself: ``path("api/", include(api_urlpatterns()))`` with
:func:`core_ledger.api.urls.api_urlpatterns`, and :func:`core_ledger.api.health.healthz`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults

from core_ledger.api.errors import error_body
from core_ledger.api.health import healthz, readyz
from core_ledger.api.urls import api_urlpatterns
from core_ledger.metrics import metrics_view

urlpatterns = [
    path("api/", include(api_urlpatterns())),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Unknown API paths answer in the API's error shape; the rest get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)

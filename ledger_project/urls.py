"""URLs: the home page (the admin's "View site"), the admin, the REST API of every ledger, the schema and the health check."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults

from core_ledger.api.errors import error_body
from core_ledger.api.health import healthz
from core_ledger.api.urls import api_urlpatterns
from ledger_project.middleware import API_PREFIX
from ledger_project.views import home

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns())),
    path("healthz", healthz, name="healthz"),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Unknown API paths answer in the API's error shape; the rest get Django's page."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return defaults.page_not_found(request, exception)

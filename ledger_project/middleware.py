"""Project middleware: under ``/api/`` a 404 is the API's JSON error shape, whatever DEBUG is."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from core_ledger.api.errors import error_body

API_PREFIX = "/api/"


class ApiNotFoundMiddleware:
    """With DEBUG on, Django answers a path no route matches with its HTML debug page, and
    ``handler404`` is never called; an API client must get ``404 not_found`` in JSON instead.
    API views' own 404s are JSON already and pass through untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and request.path.startswith(API_PREFIX)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
        return response

"""The project's URLs plus ``/bench/trivial/``: the REST scenario's baseline view.

The baseline is the cheapest authenticated DRF view: the same authentication (token), permission
and throttling as the ledger endpoints, no database work beyond authentication, a constant body.
"""

from typing import Any

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger_project.urls import handler404
from ledger_project.urls import urlpatterns as project_urlpatterns

__all__ = ["handler404", "urlpatterns"]


class TrivialView(APIView):
    """Authenticated, throttled, and nothing else."""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"ok": True})

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"ok": True, "echo": request.data})


urlpatterns = [
    path("bench/trivial/", TrivialView.as_view(), name="bench-trivial"),
    *project_urlpatterns,
]

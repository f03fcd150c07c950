"""The project's URLs plus the REST scenario's two baseline views.

- ``/bench/trivial/``: the cheapest authenticated DRF view: the same authentication (token),
  permission and throttling as the ledger endpoints, no database work beyond authentication, a
  constant body.
- ``/bench/raw-spend/``: the same, plus the spend's two SQL statements (the conditional balance
  ``UPDATE … RETURNING`` and the entry ``INSERT``) run with the raw psycopg cursor in one
  transaction: what a hand-written endpoint would do, with no validation, policy or serializer.
"""

from typing import Any

from django.db import connection, transaction
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


class RawSpendView(APIView):
    """CREDIT_SPEND of the posted amount for the caller, in two raw SQL statements."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from bench.workers import BASELINE_DEBIT, BASELINE_INSERT

        amount = -int(request.data["amount"])
        user_id = request.user.pk
        with transaction.atomic():
            connection.ensure_connection()
            with connection.connection.cursor() as cur:  # type: ignore[union-attr]
                cur.execute(BASELINE_DEBIT, [amount, user_id, amount])
                row = cur.fetchone()
                if row is None:
                    return Response({"code": "insufficient_credits"}, status=409)
                cur.execute(
                    BASELINE_INSERT,
                    [user_id, "CREDIT_SPEND", amount, row[0], None, "", "", "{}", None, None],
                )
                entry_id, created_at, _ = cur.fetchone()
        return Response(
            {"id": entry_id, "amount": amount, "balance_after": row[0], "created_at": created_at},
            status=201,
        )


urlpatterns = [
    path("bench/trivial/", TrivialView.as_view(), name="bench-trivial"),
    path("bench/raw-spend/", RawSpendView.as_view(), name="bench-raw-spend"),
    *project_urlpatterns,
]

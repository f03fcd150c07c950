"""Pagination: cursors for entries (stable while rows are appended), pages for balances."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request

MAX_PAGE_SIZE = 500


def strict_page_size(request: Request, param: str, default: int) -> int:
    """``?page_size=``: a whole number from 1 to 500, else a 400 (never a silent default or cap)."""
    raw = request.query_params.get(param)
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.ValidationError({param: [f"A whole number from 1 to {MAX_PAGE_SIZE}."]})
    return size


def bounded_parameters(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DRF's pagination parameters with the bounds :func:`strict_page_size` and pages enforce."""
    for parameter in parameters:
        schema = parameter.setdefault("schema", {})
        if parameter["name"] == "page_size":
            schema.update({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE})
            parameter["description"] = f"Results per page, 1 to {MAX_PAGE_SIZE} (default 50)."
        elif parameter["name"] == "page":
            schema.update({"type": "integer", "minimum": 1})
            parameter["description"] = "A page number from 1; a page past the last one is a 400."
        elif parameter["name"] == "cursor":
            parameter["description"] = (
                "Opaque: only the `next` and `previous` links make one; any other is a 400."
            )
    return parameters


class EntryCursorPagination(CursorPagination):
    """Newest first by id. Ids only grow, so inserts between fetches neither repeat nor skip rows.

    The cursor is on ``id``, a unique column, so it never needs an offset; ``created_at`` orders
    like ``id`` (it is set after the balance row is locked) but is not unique.
    """

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        # Both are set on the class; the DRF stubs declare them optional.
        assert self.page_size_query_param is not None and self.page_size is not None
        return strict_page_size(request, self.page_size_query_param, self.page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return bounded_parameters(super().get_schema_operation_parameters(view))

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            # A damaged cursor is the client's input error, not a missing resource.
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Invalid cursor."]}
            ) from None


class BalancePagination(PageNumberPagination):
    """Balances are ordered by the caller's choice (balance, updated_at), so plain pages."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        # Both are set on the class; the DRF stubs declare them optional.
        assert self.page_size_query_param is not None and self.page_size is not None
        return strict_page_size(request, self.page_size_query_param, self.page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return bounded_parameters(super().get_schema_operation_parameters(view))

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        if request.query_params.get(self.page_query_param) == "":
            raise exceptions.ValidationError({self.page_query_param: ["A page number from 1."]})
        return super().get_page_number(request, paginator)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound as exc:
            # A page past the end is an input error, like a bad cursor.
            raise exceptions.ValidationError({self.page_query_param: [str(exc.detail)]}) from None

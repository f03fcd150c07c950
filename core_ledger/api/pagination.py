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
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.ValidationError({param: [f"A whole number from 1 to {MAX_PAGE_SIZE}."]})
    return size


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

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound as exc:
            # A page past the end is an input error, like a bad cursor.
            raise exceptions.ValidationError({self.page_query_param: [str(exc.detail)]}) from None

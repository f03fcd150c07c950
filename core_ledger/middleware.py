"""Middleware of the core: the request timeouts of the ledger's database session."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, HttpResponse

from core_ledger.conf import app_settings
from core_ledger.db_timeouts import ledger_alias, timeouts_wrapper


class RequestTimeoutsMiddleware:
    """Every request's statements run under ``SHARED_LEDGER_REQUEST_STATEMENT_TIMEOUT_MS`` and
    ``SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS`` (30 s and 5 s by default): a busy account gives a
    clean 503 ``ledger_busy`` instead of a hung worker. The SET runs before the request's first
    statement on a session that lacks them (once per persistent connection); commands and
    migrations never pass through here and keep the connection's settings or set their own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        connection = connections[ledger_alias()]
        wrapper = timeouts_wrapper(
            connection,
            statement_ms=app_settings.REQUEST_STATEMENT_TIMEOUT_MS,
            lock_ms=app_settings.REQUEST_LOCK_TIMEOUT_MS,
        )
        with connection.execute_wrapper(wrapper):
            return self.get_response(request)

"""One structured log line per request, and the JSON formatter that writes it.

:class:`RequestLogMiddleware` logs, on the logger ``core_ledger.requests``: the request id (from
``X-Request-ID`` when it is a plain token, else a new one; echoed in the response), the user id,
method, path (never the query string), status, duration, the error ``code`` of a refusal and the
database aliases the request read or wrote. Successes and refusals are INFO; a 5xx is ERROR with
the traceback when there is one. Nothing a client sends beyond the path and the id is logged: no
header, no body, so no token, password or secret.

:class:`JsonFormatter` turns each record into one JSON object per line (``LOG_FORMAT=json``);
the request's fields sit at the top level beside ``ts``, ``level``, ``logger`` and ``message``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse

from core_ledger import metrics

logger = logging.getLogger("core_ledger.requests")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's id is kept only when it cannot forge log structure or carry much: a plain token.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EXCEPTION_ATTR = "_core_ledger_exception"
_DB_CODES = {"database_unavailable", "ledger_busy"}


def remember_exception(request: HttpRequest, exc: BaseException) -> None:
    """Keep ``exc`` for the request's log line (an error handler turned it into a response)."""
    setattr(request, _EXCEPTION_ATTR, exc)


def request_id_of(request: HttpRequest) -> str:
    """The request id :class:`RequestLogMiddleware` gave the request ("" outside it)."""
    return str(getattr(request, "request_id", ""))


def _error_code(response: HttpResponse) -> str | None:
    if response.status_code < 400:
        return None
    data = getattr(response, "data", None)
    if data is None and response.get("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    return None


def _throttle_scope(request: HttpRequest, user_id: int | None) -> str:
    if request.path.rstrip("/").endswith("auth/token"):
        return "login"
    return "user" if user_id is not None else "anon"


class _AliasRecorder:
    """An ``execute_wrapper`` noting which database alias ran a statement."""

    def __init__(self, alias: str, used: set[str]) -> None:
        self.alias = alias
        self.used = used

    def __call__(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        self.used.add(self.alias)
        return execute(sql, params, many, context)


class RequestLogMiddleware:
    """Logs every request once (see the module's docstring) and counts it in the metrics.

    Place it first in ``MIDDLEWARE``: its duration then covers the whole request, and the
    response of any other middleware carries the ``X-Request-ID`` header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        used: set[str] = set()
        started = time.perf_counter()
        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(_AliasRecorder(alias, used)))
            response = self.get_response(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        response[REQUEST_ID_HEADER] = request_id
        self._log(request, response, duration_ms, sorted(used))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        remember_exception(request, exception)

    def _log(
        self, request: HttpRequest, response: HttpResponse, duration_ms: float, used: list[str]
    ) -> None:
        user = getattr(request, "user", None)
        user_id = int(user.pk) if user is not None and user.pk is not None else None
        status = response.status_code
        code = _error_code(response)
        exc: BaseException | None = getattr(request, _EXCEPTION_ATTR, None)
        fields: dict[str, Any] = {
            "request_id": request_id_of(request),
            "user_id": user_id,
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": duration_ms,
            "db": used,
        }
        if code is not None:
            fields["code"] = code
        metrics.REQUESTS.labels(method=str(request.method), status=str(status)).inc()
        if code == "throttled":
            metrics.THROTTLED.labels(scope=_throttle_scope(request, user_id)).inc()
        if code in _DB_CODES:
            metrics.DATABASE_ERRORS.labels(code=code).inc()
        elif status >= 500 and isinstance(exc, DatabaseError):
            metrics.DATABASE_ERRORS.labels(code="server_error").inc()
        message = f"{request.method} {request.path} {status} {duration_ms}ms"
        if code is not None:
            message += f" {code}"
        if status >= 500:
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
            logger.error(message, extra={"request": fields}, exc_info=exc_info)
        else:
            logger.info(message, extra={"request": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, the request's
    fields when the record has them, and ``traceback`` when it carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            body.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            body["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(body, default=str)

"""One JSON error shape for every refusal: ``{"error": {"code", "message", "details"}}``.

Domain errors (:class:`core_ledger.exceptions.LedgerError`) carry their own code and status;
DRF's and Django's own exceptions are mapped to stable codes here, so a client never has to parse
DRF's varying shapes. Nothing a client sends may become a 500: a lost database becomes 503
``database_unavailable``, a body nested too deeply or too large becomes 400.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core_ledger.exceptions import LedgerError
from core_ledger.request_log import remember_exception

logger = logging.getLogger(__name__)

# DRF exception type -> our stable code. Order matters: subclasses before their bases.
_CODES: list[tuple[type[BaseException], str]] = [
    (exceptions.ValidationError, "validation_error"),
    (exceptions.ParseError, "validation_error"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "permission_denied"),
    (DjangoPermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (Http404, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error envelope; ``details`` is always an object (per-field lists for validation)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_code_of(exc: BaseException) -> str:
    """The ``code`` a refusal by ``exc`` carries (``server_error`` for anything unexpected)."""
    if isinstance(exc, LedgerError):
        return exc.code
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database_unavailable"
    if isinstance(exc, (DataError, RequestDataTooBig, SuspiciousOperation, RecursionError)):
        return "validation_error"
    return next((c for cls, c in _CODES if isinstance(exc, cls)), "server_error")


def _validation_details(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    return {"non_field_errors": data if isinstance(data, list) else [data]}


def _first_message(details: dict[str, Any]) -> str:
    """A readable one-line summary of per-field errors: ``field: message``."""
    for field, errors in details.items():
        first = errors[0] if isinstance(errors, list) and errors else errors
        if isinstance(first, (str, int)):
            return f"{field}: {first}"
    return "The request is not valid."


def _remember(context: dict[str, Any], exc: Exception) -> None:
    """Hand the exception to the request's log line (core_ledger.request_log)."""
    request = getattr(context.get("request"), "_request", None)
    if request is not None:
        remember_exception(request, exc)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: map every exception raised in an API view to the error shape."""
    if isinstance(exc, LedgerError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # A lost connection, a failover or a timeout the service did not translate: the request
        # did not complete and may be retried; the client gets a code, never a 500.
        logger.warning("Database unavailable during an API request", exc_info=exc)
        _remember(context, exc)
        return Response(
            error_body("database_unavailable", "The database is unavailable; retry shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, DataError):
        # SQLSTATE class 22: a value the database cannot hold or compare. Inputs are checked
        # before they reach a query; this is the net behind those checks, never a 500.
        logger.warning("Data error in an API request", exc_info=exc)
        return Response(
            error_body("validation_error", "A value in the request is out of range."),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("validation_error", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, (SuspiciousOperation, RecursionError)):
        return Response(
            error_body(
                "validation_error", "The request could not be read.", {"body": ["Malformed."]}
            ),
            status=status.HTTP_400_BAD_REQUEST,
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug, not the client's fault: log it and still answer in the one error shape.
        logger.exception("Unhandled error in an API view", exc_info=exc)
        _remember(context, exc)
        return Response(
            error_body("server_error", "An unexpected error occurred."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = next((c for cls, c in _CODES if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        details = _validation_details(response.data)
        message = _first_message(details)
    elif isinstance(exc, exceptions.ParseError):
        message = str(exc.detail)
        if "int_max_str_digits" in message or "integer string conversion" in message:
            # Python's own wording names sys.set_int_max_str_digits(): not the client's business.
            message = "JSON parse error - a number in the body has too many digits."
        details = {"body": [message]}
    else:
        data = response.data
        message = str(data.get("detail", data)) if isinstance(data, dict) else str(data)
        details = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            details = {"retry_after": int(wait + 0.999)}
    response.data = error_body(code, message, details)
    return response

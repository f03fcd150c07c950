"""The OpenAPI description of the API: everything the server enforces, said in the schema.

Views carry only ``extend_schema`` decorators built here; the server's rules stay in serializers
and services. What lives here:

- :func:`errors`: the error responses of an endpoint, each in the one error shape, with the
  headers the server sends (``WWW-Authenticate`` on 401, ``Retry-After`` on 429 and 503);
- the ``Idempotency-Key`` request header and the ``Idempotent-Replayed`` response header;
- :func:`entry_create_request`: the body of ``POST …/entries/`` per operation, built from the
  ledger declaration (a ``oneOf`` with a discriminator on ``operation``: fixed-amount operations
  take no ``amount``, the others require one), so a new ledger app gets it for free;
- :func:`add_links`: a drf-spectacular post-processing hook that adds OpenAPI links
  (post → entry → reverse), so clients and schemathesis' stateful phase can chain real calls.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
)
from rest_framework import serializers

from core_ledger.ledger import AnyLedger, Direction, PostedBy, registry
from core_ledger.models import IDEMPOTENCY_KEY_MAX_LENGTH
from core_ledger.services import MAX_AMOUNT

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

# Largest id a bigint primary key holds; larger values are refused before any query.
MAX_ID = 2**63 - 1

# Every string a client sends is refused if it holds a NUL character (PostgreSQL cannot store one).
NO_NUL_PATTERN = r"^[^\x00]*$"
# An idempotency key: 1-255 printable ASCII characters (space to tilde).
IDEMPOTENCY_KEY_PATTERN = rf"^[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}$"

ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}

_ERROR_TEXT = {
    400: "validation_error: the request is not valid (per-field details).",
    401: "not_authenticated: no or invalid credentials.",
    403: "permission_denied / operation_not_allowed.",
    404: "not_found.",
    409: "insufficient_credits / already_claimed / already_reversed / hold_not_pending "
    "(details.status: captured, released or expired).",
    413: "validation_error: the request body is too large.",
    415: "unsupported_media_type: send application/json.",
    422: "idempotency_key_reused: the key was used for a different request.",
    429: "throttled: wait Retry-After seconds.",
    503: "ledger_busy / database_unavailable: nothing was written; retry.",
}

COMMON = (401, 429, 503)
"""What any authenticated endpoint can answer besides its own statuses."""

WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    str,
    OpenApiParameter.HEADER,
    response=[401],
    required=True,
    description="The scheme to authenticate with: `Token`.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying (sent with throttling and database outages).",
)
IDEMPOTENT_REPLAYED = OpenApiParameter(
    REPLAYED_HEADER,
    str,
    OpenApiParameter.HEADER,
    response=[201],
    enum=["true"],
    description="`true` when the answer replays an earlier post with the same Idempotency-Key "
    "(nothing new was posted); absent otherwise.",
)


def IDEMPOTENT_REPLAYED_ON(status: int) -> OpenApiParameter:  # reads like the constant
    """The ``Idempotent-Replayed`` response header on another success status (captures: 200)."""
    return OpenApiParameter(
        REPLAYED_HEADER,
        str,
        OpenApiParameter.HEADER,
        response=[status],
        enum=["true"],
        description="`true` when the answer replays an earlier request with the same "
        "Idempotency-Key (nothing new was done); absent otherwise.",
    )


IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="1-255 printable ASCII characters, unique per ledger and account holder. The same "
    "key with the same request from the same caller replays the first answer (201, header "
    "Idempotent-Replayed: true, nothing posted); any other request with it is refused with 422 "
    "idempotency_key_reused. Keys are kept as long as the entries (they live on the entry row); "
    "refused requests do not store the key.",
)
RESPONSE_HEADERS = [WWW_AUTHENTICATE, RETRY_AFTER]
"""The response headers of every endpoint (drf-spectacular adds each to the statuses it lists)."""


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error responses an endpoint can give, all in the one error shape."""
    from core_ledger.api.serializers import ErrorSerializer

    return {s: OpenApiResponse(ErrorSerializer, description=_ERROR_TEXT[s]) for s in statuses}


def path_id(name: str, description: str) -> OpenApiParameter:
    """A path parameter holding a database id (a positive bigint)."""
    return OpenApiParameter(name, ID_SCHEMA, OpenApiParameter.PATH, description=description)


# --- the post body, per operation ---------------------------------------------------------------


def _prefix(label: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", label) if part)


def postable_operations(ledger: AnyLedger) -> list[str]:
    """The operations a client may post to ``ledger`` (all but the ledger's own, ``system``)."""
    return [
        value
        for value in ledger.operations.values
        if ledger.rule(value).posted_by is not PostedBy.SYSTEM
    ]


def _operation_body(ledger: AnyLedger, value: str) -> type[serializers.Serializer[Any]]:
    """The body of one operation: ``<Ledger><Operation>Post`` (no ``amount`` if fixed)."""
    from core_ledger.api.serializers import EntryCreateSerializer

    rule = ledger.rule(value)
    fixed = ledger.fixed_amount(value)
    label = str(ledger.operations(value).label)
    who = {
        PostedBy.USER: "the account holder, staff and service accounts",
        PostedBy.STAFF: "staff and service accounts",
    }[rule.posted_by]
    direction = rule.direction.value if rule.direction else "reversal"
    # The one-value enum is set by describe_post_bodies(), after drf-spectacular's enum hook
    # (which would hoist each one-value enum into its own, colliding, component).
    operation = serializers.CharField(help_text=f"{label}: a {direction}, posted by {who}.")
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "operation": operation,
        # The same fields (and limits) the server validates with.
        **{
            name: copy.deepcopy(EntryCreateSerializer._declared_fields[name])
            for name in ("user", "description", "metadata")
        },
    }
    if rule.fixed:
        doc = f"Post {value}: always {fixed} credits; sending `amount` is a 400."
    else:
        doc = f"Post {value}: `amount` (1 to {MAX_AMOUNT}) is required."
        attrs["amount"] = serializers.IntegerField(
            min_value=1,
            max_value=MAX_AMOUNT,
            help_text="Positive credits; the operation's direction gives the sign.",
        )
    if rule.direction is Direction.CREDIT:
        # Only credits expire; the server refuses expires_at on a debit (400).
        attrs["expires_at"] = copy.deepcopy(EntryCreateSerializer._declared_fields["expires_at"])
    attrs["__doc__"] = doc
    name = f"{_prefix(ledger.label)}{_prefix(value.lower())}PostSerializer"
    return type(name, (serializers.Serializer,), attrs)


@functools.cache
def entry_create_request(label: str) -> Any:
    """The body of ``POST /api/<label>/entries/``: one shape per postable operation.

    A ``oneOf`` with a discriminator on ``operation``; the schema of fixed-amount operations
    forbids ``amount`` (said by the hook :func:`describe_post_bodies`).
    """
    ledger = registry.get(label)
    return PolymorphicProxySerializer(
        component_name=f"{_prefix(label)}EntryPost",
        serializers={
            value: _operation_body(ledger, value) for value in postable_operations(ledger)
        },
        resource_type_field_name="operation",
    )


def entry_post_examples(label: str) -> list[OpenApiExample]:
    """One example body per postable operation of the ledger (also what schemathesis'
    examples phase sends): fixed-amount operations without ``amount``, the others with one."""
    ledger = registry.get(label)
    examples = []
    for value in postable_operations(ledger):
        body: dict[str, Any] = {"operation": value}
        if not ledger.rule(value).fixed:
            body["amount"] = 5
        if ledger.rule(value).posted_by is PostedBy.STAFF:
            body["user"] = 1
        examples.append(
            OpenApiExample(
                value.lower(),
                value=body,
                request_only=True,
                summary=str(ledger.operations(value).label),
            )
        )
    return examples


def hold_create_examples(label: str) -> list[OpenApiExample]:
    """One example hold per holdable operation of the ledger (its debits a client may post)."""
    ledger = registry.get(label)
    return [
        OpenApiExample(
            value.lower(),
            value={"operation": value, "amount": 5, "expires_in": 900},
            request_only=True,
            summary=f"Hold for {ledger.operations(value).label}",
        )
        for value in postable_operations(ledger)
        if ledger.rule(value).direction is Direction.DEBIT
    ]


REVERSE_EXAMPLE = OpenApiExample(
    "reason", value={"reason": "Granted twice by mistake."}, request_only=True
)


# --- post-processing hooks (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) ------------------------


def _request_component(schemas: dict[str, Any], label: str, value: str) -> dict[str, Any] | None:
    base = f"{_prefix(label)}{_prefix(value.lower())}Post"
    return schemas.get(f"{base}Request") or schemas.get(base)


def describe_post_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Each operation's body: ``operation`` is that one value; fixed amounts forbid ``amount``.

    Also marks every request body required (drf-spectacular leaves some optional).
    """
    schemas = result.get("components", {}).get("schemas", {})
    for methods in result.get("paths", {}).values():
        post = methods.get("post", {})
        if "requestBody" in post:
            # Every body here has required fields: no body is a 400, like a missing field.
            post["requestBody"]["required"] = True
    for ledger in registry:
        for value in postable_operations(ledger):
            component = _request_component(schemas, ledger.label, value)
            if component is None:
                continue
            component["properties"]["operation"] = {
                "type": "string",
                "enum": [value],
                "description": component["properties"]["operation"].get("description", ""),
            }
            if ledger.rule(value).fixed:
                component["not"] = {"required": ["amount"]}
        hold = schemas.get(f"{_prefix(ledger.label)}Hold")
        if hold is not None:
            hold["properties"]["operation"]["enum"] = list(ledger.operations.values)
            hold["properties"]["status"]["enum"] = ["pending", "captured", "released", "expired"]
    return result


def add_links(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """OpenAPI links: a posted entry → read it, reverse it; a reversal → read it."""
    paths = result.get("paths", {})
    for ledger in registry:
        base = f"/api/{ledger.label}/entries/"
        read = f"{ledger.label}_entries_retrieve"
        reverse = f"{ledger.label}_entries_reverse_create"
        entry_id = {"id": "$response.body#/id"}
        links = {
            "GetEntry": {
                "operationId": read,
                "parameters": entry_id,
                "description": "The entry just written.",
            },
            "ReverseEntry": {
                "operationId": reverse,
                "parameters": entry_id,
                "description": "Undo the entry just written.",
            },
        }
        created = paths.get(base, {}).get("post", {}).get("responses", {}).get("201")
        if created is not None:
            created["links"] = links
        read_ok = paths.get(f"{base}{{id}}/", {}).get("get", {}).get("responses", {}).get("200")
        if read_ok is not None:
            read_ok["links"] = {"ReverseEntry": links["ReverseEntry"]}
        reversed_ok = (
            paths.get(f"{base}{{id}}/reverse/", {}).get("post", {}).get("responses", {}).get("201")
        )
        if reversed_ok is not None:
            reversed_ok["links"] = {"GetEntry": links["GetEntry"]}
        _add_hold_links(paths, ledger.label)
    return result


def _add_hold_links(paths: dict[str, Any], label: str) -> None:
    """A placed hold → read it, capture it, release it; a capture → read its entry."""
    base = f"/api/{label}/holds/"
    hold_id = {"id": "$response.body#/id"}
    links = {
        name: {"operationId": f"{label}_holds_{op}", "parameters": hold_id, "description": text}
        for name, op, text in (
            ("GetHold", "retrieve", "The hold just placed."),
            ("CaptureHold", "capture_create", "Capture the hold just placed."),
            ("ReleaseHold", "release_create", "Release the hold just placed."),
        )
    }
    placed = paths.get(base, {}).get("post", {}).get("responses", {}).get("201")
    if placed is not None:
        placed["links"] = links
    captured = paths.get(f"{base}{{id}}/capture/", {}).get("post", {}).get("responses", {})
    if "200" in captured:
        captured["200"]["links"] = {
            "GetCaptureEntry": {
                "operationId": f"{label}_entries_retrieve",
                "parameters": {"id": "$response.body#/entry"},
                "description": "The debit entry the capture posted.",
            }
        }

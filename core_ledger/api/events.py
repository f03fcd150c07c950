"""``GET /api/events/``: the change events of every ledger, oldest first, never skipping one.

The ordering and the cursor are :func:`core_ledger.feed.event_page`'s; this view parses the
query, checks the permission and renders the page.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils import html
from rest_framework.views import APIView

from core_ledger import feed
from core_ledger.api.pagination import MAX_PAGE_SIZE, strict_page_size
from core_ledger.api.schema import COMMON, RESPONSE_HEADERS, errors
from core_ledger.ledger import registry
from core_ledger.triggers import EVENT_TYPES

VIEW_EVENT_PERMISSION = "core_ledger.view_event"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class CanViewEvents(BasePermission):
    """Holds ``core_ledger.view_event`` (superusers hold every permission)."""

    message = "Reading the events takes the core_ledger.view_event permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        # Custom user models may lack PermissionsMixin (and has_perm).
        has_perm = getattr(request.user, "has_perm", None)
        return bool(has_perm and has_perm(VIEW_EVENT_PERMISSION))


class QueryChoiceField(serializers.ChoiceField):
    """A choice from the query string, where an empty value (``?ledger=``) is refused rather
    than read as "left out"."""

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary) and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)


class EventQuerySerializer(serializers.Serializer[Any]):
    """The feed's filters (the cursor and the page size are read apart)."""

    ledger = QueryChoiceField(choices=[], required=False)
    type = QueryChoiceField(choices=list(EVENT_TYPES), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ledger"].choices = registry.labels()  # type: ignore[attr-defined]


class BalanceAfterSerializer(serializers.Serializer[Any]):
    balance = serializers.IntegerField(help_text="The balance right after the change.")
    available = serializers.IntegerField(
        help_text="What could be spent right after the change (balance less expired credits "
        "not yet written down)."
    )


@extend_schema_field({"type": "object", "additionalProperties": {}})
class EventDataField(serializers.JSONField):
    """An event's ``data``: a JSON object."""


class EventSerializer(serializers.Serializer[Any]):
    """One change event (also the body of a webhook delivery)."""

    id = serializers.IntegerField(help_text="Unique and stable: receivers drop duplicates by it.")
    type = serializers.ChoiceField(choices=list(EVENT_TYPES))
    ledger = serializers.CharField(help_text="The ledger's label.")
    created_at = serializers.DateTimeField()
    data = EventDataField(  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType,reportIncompatibleMethodOverride]  # the field "data" (schema only)
        help_text="For entry.posted: the entry as GET /api/<ledger>/entries/<id>/ showed it "
        'when it was posted, plus "balance": {"balance", "available"} after it.'
    )


class EventPageSerializer(serializers.Serializer[Any]):
    results = EventSerializer(many=True)
    next_cursor = serializers.CharField(
        help_text="Resumes after the last event of this page (after where you were, when the "
        "page is empty): poll with it for what comes next. Present on every page."
    )


@extend_schema(tags=["events"])
class EventFeedView(APIView):
    """Every ledger's change events, oldest first (``core_ledger.view_event``).

    A reader that follows ``next_cursor`` never misses an event and never sees one twice, even
    when transactions commit out of order: an event is handed out once every transaction that
    was running when it committed has ended.
    """

    permission_classes = [IsAuthenticated, CanViewEvents]

    @extend_schema(
        operation_id="events_list",
        parameters=[
            OpenApiParameter(
                "cursor",
                {"type": "string", "pattern": CURSOR_PATTERN},
                description="Opaque: a next_cursor the feed handed out; any other is a 400. "
                "Leave it out to start at the oldest event.",
            ),
            OpenApiParameter(
                "ledger",
                {"type": "string", "enum": registry.labels()},
                description="Only this ledger's events.",
            ),
            OpenApiParameter(
                "type",
                {"type": "string", "enum": list(EVENT_TYPES)},
                description="Only events of this type.",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                description=f"Events per page, 1 to {MAX_PAGE_SIZE} (default 50).",
            ),
            *RESPONSE_HEADERS,
        ],
        responses={200: EventPageSerializer, **errors(400, 403, *COMMON)},
    )
    def get(self, request: Request) -> Response:
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        size = strict_page_size(request, "page_size", 50)
        raw_cursor = request.query_params.get("cursor")
        after = None if raw_cursor is None else feed.Position.decode(raw_cursor)
        filters = query.validated_data
        page = feed.event_page(
            after=after,
            ledgers=[filters["ledger"]] if "ledger" in filters else [],
            types=[filters["type"]] if "type" in filters else [],
            limit=size,
        )
        return Response(
            {
                "results": feed.render_events(page.events),
                "next_cursor": page.next_position.encode(),
            }
        )

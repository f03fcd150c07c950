"""The API's views. Each is thin: parse the request, make one service or selector call, render.

Each ledger view is bound to its ledger by :func:`core_ledger.api.urls.bind` (a subclass with
``ledger_label`` set), which :func:`core_ledger.api.urls.ledger_urlpatterns` routes for every
registered ledger.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from core_ledger import metrics, selectors, services
from core_ledger.api.filters import (
    BalanceFilter,
    HoldFilter,
    StableOrderingFilter,
    entry_filter_for,
)
from core_ledger.api.pagination import BalancePagination, EntryCursorPagination
from core_ledger.api.permissions import CanReadAllAccounts, can_read_all
from core_ledger.api.schema import (
    COMMON,
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_REPLAYED,
    IDEMPOTENT_REPLAYED_ON,
    REPLAYED_HEADER,
    RESPONSE_HEADERS,
    REVERSE_EXAMPLE,
    entry_create_request,
    entry_post_examples,
    errors,
    hold_create_examples,
    path_id,
)
from core_ledger.api.serializers import (
    BalanceQuerySerializer,
    BalanceSerializer,
    HoldCaptureSerializer,
    HoldReleaseSerializer,
    LedgerSerializer,
    MyBalanceSerializer,
    ReverseSerializer,
    entry_create_serializer_for,
    entry_representation,
    entry_serializer_for,
    hold_create_serializer_for,
    hold_serializer_for,
    ledger_description,
)
from core_ledger.ledger import AnyLedger, registry
from core_ledger.models import AbstractBalance, AbstractHold, AbstractLedgerEntry
from core_ledger.routing import lag_tolerant
from core_ledger.services.holds import HoldResult


def _caller_id(request: Request) -> int:
    """The authenticated caller's id (every view here requires authentication)."""
    pk = request.user.pk
    assert pk is not None
    return int(pk)


class LedgerViewMixin:
    """Binds a view to one ledger; subclasses set ``ledger_label``."""

    ledger_label: ClassVar[str] = ""

    @property
    def ledger(self) -> AnyLedger:
        return registry.get(self.ledger_label)


# --- across ledgers ------------------------------------------------------------------------------


@extend_schema(tags=["ledgers"])
class LedgerListView(APIView):
    """Every ledger with its operations and their rules (who posts, how often, fixed amounts)."""

    @extend_schema(
        operation_id="ledgers_list",
        parameters=RESPONSE_HEADERS,
        responses={200: LedgerSerializer(many=True), **errors(*COMMON)},
    )
    def get(self, request: Request) -> Response:
        return Response(LedgerSerializer([ledger_description(x) for x in registry], many=True).data)


@extend_schema(tags=["balances"])
class AllBalancesView(APIView):
    """The caller's balance in every ledger, by ledger label."""

    @extend_schema(
        operation_id="balances_mine_all",
        parameters=RESPONSE_HEADERS,
        responses={
            200: OpenApiResponse(
                {"type": "object", "additionalProperties": {"type": "integer"}},
                description='Ledger label -> balance, e.g. {"alpha": 15, "beta": 0}.',
            ),
            **errors(*COMMON),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.balances_for_user(user_id=_caller_id(request)))


class SchemaView(SpectacularAPIView):
    """``/api/schema/``, generated one request at a time.

    drf-spectacular loads its extensions lazily and not thread-safely: two first requests at
    once on a threaded server made one of them a 500 (found by two schemathesis runs at once).
    """

    _lock = threading.Lock()

    def _get_schema_response(self, request: Request) -> Response:
        with self._lock:
            response: Response = super()._get_schema_response(request)  # type: ignore[no-untyped-call]
            return response


# --- one ledger ----------------------------------------------------------------------------------


class MyBalanceView(LedgerViewMixin, APIView):
    """The caller's balance in this ledger, now or at a past moment."""

    @extend_schema(
        parameters=[BalanceQuerySerializer, *RESPONSE_HEADERS],
        responses={200: MyBalanceSerializer, **errors(400, *COMMON)},
    )
    def get(self, request: Request) -> Response:
        query = BalanceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        snapshot = selectors.balance_snapshot(
            ledger=self.ledger, user_id=_caller_id(request), at=query.validated_data.get("at")
        )
        return Response(MyBalanceSerializer(snapshot).data)


@extend_schema_view(
    list=extend_schema(
        parameters=RESPONSE_HEADERS,
        responses={200: BalanceSerializer(many=True), **errors(400, 403, *COMMON)},
    ),
    retrieve=extend_schema(
        parameters=[path_id("user_id", "The user's id."), *RESPONSE_HEADERS],
        responses={200: BalanceSerializer, **errors(400, 403, 404, *COMMON)},
    ),
)
class BalanceViewSet(LedgerViewMixin, viewsets.ReadOnlyModelViewSet[AbstractBalance]):
    """Every user's balance (staff and service accounts of this ledger)."""

    permission_classes = [IsAuthenticated, CanReadAllAccounts]
    serializer_class = BalanceSerializer
    pagination_class = BalancePagination
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    filterset_class = BalanceFilter
    ordering_fields = ["balance", "updated_at"]
    ordering = ["pk"]
    lookup_url_kwarg = "user_id"
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[AbstractBalance]:
        return selectors.balance_list(ledger=self.ledger)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Every user's balance: a report, so a replica's small lag is fine (core_ledger.routing).
        return lag_tolerant(lambda: super(BalanceViewSet, self).list(request, *args, **kwargs))


class EntryViewSet(
    LedgerViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[AbstractLedgerEntry],
):
    """The caller's entries (staff and service accounts: everyone's); posting and reversing."""

    pagination_class = EntryCursorPagination
    filter_backends = [DjangoFilterBackend]
    parser_classes = [JSONParser]
    lookup_value_regex = "[0-9]+"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.ledger_label:
            _document_entry_viewset(cls)

    def get_queryset(self) -> QuerySet[AbstractLedgerEntry]:
        user = self.request.user
        owner = None if can_read_all(self.ledger, user) else user.pk
        # Another user's entry is outside the queryset, so retrieving it is a 404 (not 403):
        # the API does not reveal which entry ids exist.
        entries = selectors.entry_list(ledger=self.ledger, user_id=owner)
        return entries.select_related("reversed_by")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def read() -> Response:
            return super(EntryViewSet, self).list(request, *args, **kwargs)

        # Other users' entries (operators, services) may lag a little and go to a replica; the
        # caller's own list stays on the primary, so it always shows what they just posted.
        if can_read_all(self.ledger, request.user):
            return lag_tolerant(read)
        return read()

    @property
    def filterset_class(self) -> Any:  # read by DjangoFilterBackend and drf-spectacular
        return entry_filter_for(self.ledger_label)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "create":
            return entry_create_serializer_for(self.ledger_label)
        if self.action == "reverse":
            return ReverseSerializer
        return entry_serializer_for(self.ledger_label)

    def _entry_data(self, entry: AbstractLedgerEntry) -> Any:
        return entry_representation(self.ledger_label, entry)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Post an entry; with an ``Idempotency-Key`` a repeat replays the first answer."""
        raw = request.data.get("operation") if isinstance(request.data, dict) else None
        operation = (
            raw if isinstance(raw, str) and raw in self.ledger.operations.values else "invalid"
        )
        with metrics.observe_post(ledger=self.ledger_label, operation=operation) as observed:
            entry, replayed = self._post(request)
            observed.outcome = "replayed" if replayed else "posted"
        headers = {REPLAYED_HEADER: "true"} if replayed else {}
        return Response(self._entry_data(entry), status=status.HTTP_201_CREATED, headers=headers)

    def _post(self, request: Request) -> tuple[AbstractLedgerEntry, bool]:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.entry_post(
            ledger=self.ledger,
            user_id=data["user"],
            operation=data["operation"],
            amount=data.get("amount"),
            actor=request.user,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            description=data["description"],
            metadata=data["metadata"],
            expires_at=data.get("expires_at"),
        )
        return result.entry, result.replayed

    @action(detail=True, methods=["post"])
    def reverse(self, request: Request, pk: str) -> Response:
        """Undo an entry with an opposite REVERSAL entry (staff and service accounts; once)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entry = services.entry_reverse(
            ledger=self.ledger,
            entry_id=int(pk),
            reason=serializer.validated_data["reason"],
            actor=request.user,
        )
        return Response(self._entry_data(entry), status=status.HTTP_201_CREATED)


def _document_entry_viewset(cls: type[EntryViewSet]) -> None:
    """Describe a ledger's entry endpoints with that ledger's own serializers (and enums)."""
    entry = entry_serializer_for(cls.ledger_label)
    entry_id = path_id("id", "The entry's id.")
    extend_schema_view(
        list=extend_schema(
            parameters=RESPONSE_HEADERS,
            responses={200: entry(many=True), **errors(400, *COMMON)},
        ),
        retrieve=extend_schema(
            parameters=[entry_id, *RESPONSE_HEADERS],
            responses={200: entry, **errors(400, 404, *COMMON)},
        ),
        create=extend_schema(
            request=entry_create_request(cls.ledger_label),
            examples=entry_post_examples(cls.ledger_label),
            parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, *RESPONSE_HEADERS],
            responses={201: entry, **errors(400, 403, 409, 413, 415, 422, *COMMON)},
        ),
        reverse=extend_schema(
            request=ReverseSerializer,
            examples=[REVERSE_EXAMPLE],
            parameters=[entry_id, *RESPONSE_HEADERS],
            responses={201: entry, **errors(400, 403, 404, 409, 413, 415, *COMMON)},
        ),
    )(cls)


class HoldViewSet(
    LedgerViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[AbstractHold],
):
    """The caller's holds (``view_all_accounts``: everyone's); placing, capturing, releasing."""

    pagination_class = EntryCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = HoldFilter
    parser_classes = [JSONParser]
    lookup_value_regex = "[0-9]+"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.ledger_label:
            _document_hold_viewset(cls)

    def get_queryset(self) -> QuerySet[AbstractHold]:
        user = self.request.user
        viewer = None if can_read_all(self.ledger, user) else user.pk
        # Holds on the caller's account and those the caller placed; any other hold is outside
        # the queryset, so reading, capturing or releasing it is a 404 (no ids revealed).
        return selectors.hold_list(ledger=self.ledger, seen_by=viewer)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "create":
            return hold_create_serializer_for(self.ledger_label)
        if self.action == "capture":
            return HoldCaptureSerializer
        if self.action == "release":
            return HoldReleaseSerializer
        return hold_serializer_for(self.ledger_label)

    def _answer(self, result: HoldResult, status_code: int) -> Response:
        data = hold_serializer_for(self.ledger_label)(
            result.hold, context=self.get_serializer_context()
        ).data
        headers = {REPLAYED_HEADER: "true"} if result.replayed else {}
        return Response(data, status=status_code, headers=headers)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Reserve credits; with an ``Idempotency-Key`` a repeat replays the first answer."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.hold_place(
            ledger=self.ledger,
            user_id=data["user"],
            operation=data["operation"],
            amount=data["amount"],
            actor=request.user,
            expires_in=data.get("expires_in"),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            description=data["description"],
            metadata=data["metadata"],
        )
        return self._answer(result, status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def capture(self, request: Request, pk: str) -> Response:
        """Post the hold's debit entry for the whole hold or a smaller ``amount``."""
        hold = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.hold_capture(
            ledger=self.ledger,
            hold_id=hold.pk,
            amount=serializer.validated_data.get("amount"),
            actor=request.user,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        )
        return self._answer(result, status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        """Free the whole hold; no entry is written."""
        hold = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.hold_release(
            ledger=self.ledger,
            hold_id=hold.pk,
            actor=request.user,
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        )
        return self._answer(result, status.HTTP_200_OK)


def _document_hold_viewset(cls: type[HoldViewSet]) -> None:
    """Describe a ledger's hold endpoints with that ledger's own serializers (and enums)."""
    hold = hold_serializer_for(cls.ledger_label)
    hold_id = path_id("id", "The hold's id.")
    replayed = IDEMPOTENT_REPLAYED_ON(200)
    extend_schema_view(
        list=extend_schema(
            parameters=RESPONSE_HEADERS,
            responses={200: hold(many=True), **errors(400, *COMMON)},
        ),
        retrieve=extend_schema(
            parameters=[hold_id, *RESPONSE_HEADERS],
            responses={200: hold, **errors(400, 404, *COMMON)},
        ),
        create=extend_schema(
            request=hold_create_serializer_for(cls.ledger_label),
            examples=hold_create_examples(cls.ledger_label),
            parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, *RESPONSE_HEADERS],
            responses={201: hold, **errors(400, 403, 409, 413, 415, 422, *COMMON)},
        ),
        capture=extend_schema(
            request=HoldCaptureSerializer,
            parameters=[hold_id, IDEMPOTENCY_KEY, replayed, *RESPONSE_HEADERS],
            responses={200: hold, **errors(400, 403, 404, 409, 413, 415, 422, *COMMON)},
        ),
        release=extend_schema(
            request=HoldReleaseSerializer,
            parameters=[hold_id, IDEMPOTENCY_KEY, replayed, *RESPONSE_HEADERS],
            responses={200: hold, **errors(400, 403, 404, 409, 413, 415, 422, *COMMON)},
        ),
    )(cls)

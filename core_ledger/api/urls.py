"""Routes of the API: the cross-ledger endpoints, and every registered ledger under ``<label>/``.

There is one way a view is bound to a ledger: :func:`ledger_urlpatterns` makes, for each
registered ledger, a subclass of each ledger view with ``ledger_label`` set, and
:func:`api_urlpatterns` mounts them at ``api/<label>/``. A ledger app writes no API code and no
URLconf: declaring its ``Ledger`` is enough.
"""

from __future__ import annotations

import functools
from typing import TypeVar, cast

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core_ledger.api.auth import LogoutAllView, LogoutView, TokenView
from core_ledger.api.errors import error_body
from core_ledger.api.events import EventFeedView
from core_ledger.api.views import (
    AllBalancesView,
    BalanceViewSet,
    EntryViewSet,
    HoldViewSet,
    LedgerListView,
    LedgerViewMixin,
    MyBalanceView,
    SchemaView,
)
from core_ledger.ledger import AnyLedger, registry

Routes = list[URLPattern | URLResolver]
ViewT = TypeVar("ViewT", bound=LedgerViewMixin)


def bind(view: type[ViewT], ledger: AnyLedger) -> type[ViewT]:
    """``view`` bound to ``ledger``: a subclass named after it (``AlphaEntryViewSet``)."""
    # The cache cannot carry the type variable; classes are hashable, mypy's Hashable check on
    # a class object is wrong (it reads __hash__ as the instances' method).
    return cast("type[ViewT]", _bind(view, ledger.label))  # type: ignore[arg-type]


@functools.cache
def _bind(view: type[LedgerViewMixin], label: str) -> type[LedgerViewMixin]:
    name = "".join(p.capitalize() for p in label.split("_")) + view.__name__
    # type() with three arguments is a subclass of ``view``; checkers only see a plain type.
    return cast(
        "type[LedgerViewMixin]",
        type(name, (view,), {"ledger_label": label, "__module__": view.__module__}),
    )


def ledger_urlpatterns(ledger: AnyLedger) -> Routes:
    """The routes of one ledger (mounted under ``api/<label>/`` by :func:`api_urlpatterns`)."""
    label = ledger.label
    router = SimpleRouter()
    router.register("entries", bind(EntryViewSet, ledger), basename=f"{label}-entry")
    router.register("balances", bind(BalanceViewSet, ledger), basename=f"{label}-balance")
    router.register("holds", bind(HoldViewSet, ledger), basename=f"{label}-hold")
    return [
        path("balance/", bind(MyBalanceView, ledger).as_view(), name=f"{label}-my-balance"),
        *router.urls,
    ]


def api_urlpatterns() -> Routes:
    """Everything under ``api/``."""
    return [
        path("ledgers/", LedgerListView.as_view(), name="api-ledgers"),
        path("balances/", AllBalancesView.as_view(), name="api-balances"),
        path("auth/token/", TokenView.as_view(), name="api-token"),
        path("auth/logout/", LogoutView.as_view(), name="api-logout"),
        path("auth/logout-all/", LogoutAllView.as_view(), name="api-logout-all"),
        path("events/", EventFeedView.as_view(), name="api-events"),
        path("schema/", SchemaView.as_view(), name="api-schema"),
        path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
        *[path(f"{ledger.label}/", include(ledger_urlpatterns(ledger))) for ledger in registry],
        # Last: any other path under api/ (an unknown ledger, a malformed id) is a JSON 404,
        # also under DEBUG, where Django would answer its HTML page instead of handler404.
        re_path(r"^", api_not_found, name="api-not-found"),
    ]


@csrf_exempt  # a POST to an unknown path is a 404, not a CSRF failure page
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    """The API's 404 for paths no route matches, in the one error shape."""
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)

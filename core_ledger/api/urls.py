"""Routes of the API: the cross-ledger endpoints, and every registered ledger under ``<label>/``.

There is one way a view is bound to a ledger: :func:`ledger_urlpatterns` makes, for each
registered ledger, a subclass of each ledger view with ``ledger_label`` set, and
:func:`api_urlpatterns` mounts them at ``api/<label>/``. A ledger app writes no API code and no
URLconf: declaring its ``Ledger`` is enough.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core_ledger.api.auth import LogoutAllView, LogoutView, TokenView
from core_ledger.api.views import (
    AllBalancesView,
    BalanceViewSet,
    EntryViewSet,
    LedgerListView,
    LedgerViewMixin,
    MyBalanceView,
)
from core_ledger.ledger import AnyLedger, registry

Routes = list[URLPattern | URLResolver]
ViewT = TypeVar("ViewT", bound=LedgerViewMixin)


def bind(view: type[ViewT], ledger: AnyLedger) -> type[ViewT]:
    """``view`` bound to ``ledger``: a subclass named after it (``AlphaEntryViewSet``)."""
    return _bind(view, ledger.label)


@functools.cache
def _bind(view: type[ViewT], label: str) -> type[ViewT]:
    name = "".join(p.capitalize() for p in label.split("_")) + view.__name__
    return type(name, (view,), {"ledger_label": label, "__module__": view.__module__})


def ledger_urlpatterns(ledger: AnyLedger) -> Routes:
    """The routes of one ledger (mounted under ``api/<label>/`` by :func:`api_urlpatterns`)."""
    label = ledger.label
    router = SimpleRouter()
    router.register("entries", bind(EntryViewSet, ledger), basename=f"{label}-entry")
    router.register("balances", bind(BalanceViewSet, ledger), basename=f"{label}-balance")
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
        path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
        path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
        *[path(f"{ledger.label}/", include(ledger_urlpatterns(ledger))) for ledger in registry],
    ]

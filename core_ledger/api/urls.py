"""Routes of the API: the cross-ledger endpoints, and every registered ledger under ``<label>/``.

A ledger app's ``urls.py`` is one call::

    urlpatterns = ledger_urlpatterns("alpha", entries=AlphaEntryViewSet, ...)

and :func:`api_urlpatterns` mounts each registered ledger's app ``urls`` module under its label
(or the core's default views when the app has no ``urls.py``), so a new ledger app needs no
change to the project's URLs.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import Any

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core_ledger.api.views import (
    AllBalancesView,
    BalanceViewSet,
    EntryViewSet,
    LedgerListView,
    LedgerViewMixin,
    MyBalanceView,
    TokenView,
)
from core_ledger.ledger import registry

Routes = list[URLPattern | URLResolver]


def _bound(view: Any, label: str) -> Any:
    """``view`` bound to ledger ``label``: as given when it is, else a subclass that is."""
    if issubclass(view, LedgerViewMixin) and view.ledger_label == label:
        return view
    if view.ledger_label:
        raise ValueError(f"{view.__name__} serves ledger {view.ledger_label!r}, not {label!r}.")
    name = "".join(p.capitalize() for p in label.split("_")) + view.__name__
    return type(name, (view,), {"ledger_label": label, "__module__": view.__module__})


def ledger_urlpatterns(
    label: str,
    *,
    entries: type[EntryViewSet] = EntryViewSet,
    balances: type[BalanceViewSet] = BalanceViewSet,
    balance: type[MyBalanceView] = MyBalanceView,
) -> Routes:
    """The routes of one ledger (mounted under ``api/<label>/`` by :func:`api_urlpatterns`)."""
    registry.get(label)  # fail at start-up, not per request, on a typo
    router = SimpleRouter()
    router.register("entries", _bound(entries, label), basename=f"{label}-entry")
    router.register("balances", _bound(balances, label), basename=f"{label}-balance")
    return [
        path("balance/", _bound(balance, label).as_view(), name=f"{label}-my-balance"),
        *router.urls,
    ]


def _ledger_routes(label: str) -> Any:
    ledger = registry.get(label)
    app_module = ledger.entry_model._meta.app_config.name
    if find_spec(f"{app_module}.urls") is not None:
        return include(import_module(f"{app_module}.urls"))
    return include(ledger_urlpatterns(label))


def api_urlpatterns() -> Routes:
    """Everything under ``api/``."""
    return [
        path("ledgers/", LedgerListView.as_view(), name="api-ledgers"),
        path("balances/", AllBalancesView.as_view(), name="api-balances"),
        path("auth/token/", TokenView.as_view(), name="api-token"),
        path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
        path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
        *[path(f"{label}/", _ledger_routes(label)) for label in registry.labels()],
    ]

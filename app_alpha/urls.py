"""Alpha's API routes, mounted under ``api/alpha/`` by ``core_ledger.api.urls``."""

from app_alpha.api import AlphaBalanceViewSet, AlphaEntryViewSet, AlphaMyBalanceView
from core_ledger.api.urls import ledger_urlpatterns

urlpatterns = ledger_urlpatterns(
    "alpha",
    entries=AlphaEntryViewSet,
    balances=AlphaBalanceViewSet,
    balance=AlphaMyBalanceView,
)

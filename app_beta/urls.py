"""Beta's API routes, mounted under ``api/beta/`` by ``core_ledger.api.urls``."""

from app_beta.api import BetaBalanceViewSet, BetaEntryViewSet, BetaMyBalanceView
from core_ledger.api.urls import ledger_urlpatterns

urlpatterns = ledger_urlpatterns(
    "beta",
    entries=BetaEntryViewSet,
    balances=BetaBalanceViewSet,
    balance=BetaMyBalanceView,
)

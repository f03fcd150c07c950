"""Beta's REST API: the core's views bound to the beta ledger."""

from core_ledger.api.views import BalanceViewSet, EntryViewSet, MyBalanceView


class BetaEntryViewSet(EntryViewSet):
    ledger_label = "beta"


class BetaBalanceViewSet(BalanceViewSet):
    ledger_label = "beta"


class BetaMyBalanceView(MyBalanceView):
    ledger_label = "beta"

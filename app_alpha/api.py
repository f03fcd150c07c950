"""Alpha's REST API: the core's views bound to the alpha ledger."""

from core_ledger.api.views import BalanceViewSet, EntryViewSet, MyBalanceView


class AlphaEntryViewSet(EntryViewSet):
    ledger_label = "alpha"


class AlphaBalanceViewSet(BalanceViewSet):
    ledger_label = "alpha"


class AlphaMyBalanceView(MyBalanceView):
    ledger_label = "alpha"

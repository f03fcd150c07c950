"""Alpha's operations: the shared ones first, then its own (append only, never reorder)."""

from django.utils.translation import gettext_lazy as _

from core_ledger.operations import LedgerOperation


class AlphaOperation(LedgerOperation):
    # Shared members, restated so that type-checkers see them (check core_ledger.E010).
    DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
    SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
    CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
    CREDIT_ADD = "CREDIT_ADD", _("Credit add")
    REVERSAL = "REVERSAL", _("Reversal")
    EXPIRY = "EXPIRY", _("Expiry")
    # Alpha's own.
    GAME_WIN = "GAME_WIN", _("Game win")
    GAME_ENTRY_FEE = "GAME_ENTRY_FEE", _("Game entry fee")

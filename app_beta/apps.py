from core_ledger.apps import LedgerAppConfig


class BetaConfig(LedgerAppConfig):
    default = True
    name = "app_beta"
    verbose_name = "Beta (shop)"

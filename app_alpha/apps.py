from core_ledger.apps import LedgerAppConfig


class AlphaConfig(LedgerAppConfig):
    default = True
    name = "app_alpha"
    verbose_name = "Alpha (game)"

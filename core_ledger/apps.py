"""App configs: the core's own, and the base every ledger app's config subclasses."""

from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, post_save, pre_migrate


class CoreLedgerConfig(AppConfig):
    default = True
    name = "core_ledger"
    verbose_name = "Shared Ledger core"

    def ready(self) -> None:
        from core_ledger import checks, signals  # noqa: F401  # pyright: ignore[reportUnusedImport]  (registers checks)

        pre_migrate.connect(
            signals.create_trigram_extension, sender=self, dispatch_uid="core_ledger.pg_trgm"
        )
        post_migrate.connect(
            signals.install_ledger_functions, dispatch_uid="core_ledger.ledger_functions"
        )
        post_save.connect(
            signals.grant_signup_credits,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="core_ledger.signup_credits",
        )


class LedgerAppConfig(AppConfig):
    """Base config of a ledger app: registers the ``ledger`` declared in ``<app>/ledger.py``."""

    ledger_module = "ledger"

    def ready(self) -> None:
        from core_ledger.ledger import Ledger, registry

        module = import_module(f"{self.name}.{self.ledger_module}")
        ledger = getattr(module, "ledger", None)
        if not isinstance(ledger, Ledger):
            raise TypeError(f"{self.name}.{self.ledger_module} must define `ledger = Ledger(...)`.")
        registry.register(ledger)

"""Beta's admin: the core's read-only entry and balance admins on beta's tables."""

from django.contrib import admin

from app_beta.models import BetaBalance, BetaEntry
from core_ledger.admin import BalanceAdmin, EntryAdmin

admin.site.register(BetaEntry, EntryAdmin)
admin.site.register(BetaBalance, BalanceAdmin)

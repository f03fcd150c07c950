"""Beta's admin: the core's read-only entry and balance admins on beta's tables."""

from django.contrib import admin

from app_beta.models import BetaBalance, BetaEntry, BetaHold, BetaLot
from core_ledger.admin import BalanceAdmin, EntryAdmin, HoldAdmin, LotAdmin

admin.site.register(BetaEntry, EntryAdmin)
admin.site.register(BetaBalance, BalanceAdmin)
admin.site.register(BetaLot, LotAdmin)
admin.site.register(BetaHold, HoldAdmin)

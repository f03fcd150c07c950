"""Alpha's admin: the core's read-only entry and balance admins on alpha's tables."""

from django.contrib import admin

from app_alpha.models import AlphaBalance, AlphaEntry, AlphaHold, AlphaLot
from core_ledger.admin import BalanceAdmin, EntryAdmin, HoldAdmin, LotAdmin

admin.site.register(AlphaEntry, EntryAdmin)
admin.site.register(AlphaBalance, BalanceAdmin)
admin.site.register(AlphaLot, LotAdmin)
admin.site.register(AlphaHold, HoldAdmin)

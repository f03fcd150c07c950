"""Mistakes that mypy and pyright must both refuse: one per line marked ``# expect-error``.

Never imported or run, and left out of ``make check``: ``test_typechecks.py`` runs both checkers
on this file and fails unless each marked line has an error and no other line has one. Keep each
mistake on one line (the formatter must not split it), so the error lands on the marked line.
"""

from __future__ import annotations

from app_alpha.ledger import ledger as alpha_ledger
from app_alpha.models import AlphaBalance, AlphaEntry
from app_alpha.operations import AlphaOperation
from app_beta.models import BetaEntry
from app_beta.operations import BetaOperation
from core_ledger.ledger import Ledger
from core_ledger.operations import SharedOperation
from core_ledger.services import entry_post, entry_reverse, grant_bulk, hold_place

AlphaLedger = Ledger[AlphaEntry, AlphaBalance, AlphaOperation]
alpha: AlphaLedger = alpha_ledger


def misspelt_operation() -> None:
    print(AlphaOperation.GAME_WINN)  # expect-error
    entry_post(ledger=alpha, user_id=1, operation=AlphaOperation.GAME_WINN)  # expect-error


def another_ledgers_operation() -> None:
    entry_post(ledger=alpha, user_id=1, operation=BetaOperation.PURCHASE, amount=1)  # expect-error
    grant_bulk(ledger=alpha, operation=BetaOperation.REFERRAL_BONUS, user_ids=[1])  # expect-error
    hold_place(ledger=alpha, user_id=1, operation=BetaOperation.PURCHASE, amount=1)  # expect-error
    alpha.rule(AlphaOperation.GAME_WIN)  # a member of the ledger's own class: fine


def a_shared_member_where_the_ledgers_own_is_expected() -> None:
    # Use alpha.shared(SharedOperation.DAILY_REWARD) or AlphaOperation.DAILY_REWARD.
    entry_post(ledger=alpha, user_id=1, operation=SharedOperation.DAILY_REWARD)  # expect-error


def raw_strings_where_an_operation_is_expected() -> None:
    entry_post(ledger=alpha, user_id=1, operation="NOT_AN_OP", amount=1)  # expect-error
    entry_post(ledger=alpha, user_id=1, operation="GAME_WIN", amount=1)  # expect-error
    grant_bulk(ledger=alpha, operation="DAILY_REWARD", user_ids=[1])  # expect-error
    hold_place(ledger=alpha, user_id=1, operation="CREDIT_SPEND", amount=1)  # expect-error
    alpha.shared("DAILY_REWARD")  # expect-error


def wrong_use_of_a_service_result() -> None:
    result = entry_post(ledger=alpha, user_id=1, operation=AlphaOperation.GAME_WIN, amount=1)
    x: int = entry_post(ledger=alpha, user_id=1, operation=AlphaOperation.GAME_WIN)  # expect-error
    print(result.entry.no_such_field)  # expect-error
    beta_entry: BetaEntry = result.entry  # expect-error
    reversed_entry: BetaEntry = entry_reverse(ledger=alpha, entry_id=1, reason="r")  # expect-error
    print(x, beta_entry, reversed_entry)


def wrong_model_from_a_query() -> None:
    entry: BetaEntry = alpha.entry_model.objects.get(pk=1)  # expect-error
    print(alpha.entry_model.objects.get(pk=1).no_such_field)  # expect-error
    print(entry)


def a_declaration_with_another_apps_model() -> None:
    # As app_alpha/ledger.py declares it (label, name, entry, balance, operations), one swap.
    wrong: AlphaLedger = Ledger("w", "W", BetaEntry, AlphaBalance, AlphaOperation)  # expect-error
    print(wrong)

"""Correct uses of the typed ledger API, with what mypy and pyright must infer for each.

Never imported or run: ``test_typechecks.py`` type-checks this file with both checkers and
expects no error (``make check`` checks it too). Each ``assert_type`` is a claim a reader relies
on: the ledger's own model, operations class and service results, never ``Any``.
"""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import assert_type

from app_alpha.ledger import ledger as alpha_ledger
from app_alpha.models import AlphaBalance, AlphaEntry
from app_alpha.operations import AlphaOperation
from app_beta.ledger import ledger as beta_ledger
from app_beta.models import BetaEntry
from app_beta.operations import BetaOperation
from core_ledger.ledger import AnyLedger, Ledger, registry
from core_ledger.models import AbstractHold, AbstractLot
from core_ledger.operations import SharedOperation
from core_ledger.selectors import balance_list, entry_list
from core_ledger.services import (
    GrantSummary,
    HoldResult,
    PostResult,
    entry_post,
    entry_reverse,
    grant_bulk,
    hold_capture,
    hold_place,
    hold_release,
)


def declarations() -> None:
    assert_type(alpha_ledger, Ledger[AlphaEntry, AlphaBalance, AlphaOperation])
    assert_type(alpha_ledger.entry_model, type[AlphaEntry])
    assert_type(alpha_ledger.balance_model, type[AlphaBalance])
    assert_type(alpha_ledger.operations, type[AlphaOperation])
    assert_type(beta_ledger.entry_model, type[BetaEntry])
    assert_type(alpha_ledger.lot_model, type[AbstractLot])
    assert_type(alpha_ledger.hold_model, type[AbstractHold])


def operations() -> None:
    assert_type(AlphaOperation.GAME_WIN, Literal[AlphaOperation.GAME_WIN])
    assert_type(AlphaOperation.DAILY_REWARD, Literal[AlphaOperation.DAILY_REWARD])
    assert_type(BetaOperation.PURCHASE, Literal[BetaOperation.PURCHASE])
    # Outside strings become members once, at the edge.
    assert_type(alpha_ledger.operation("GAME_WIN"), AlphaOperation)
    assert_type(alpha_ledger.shared(SharedOperation.DAILY_REWARD), AlphaOperation)
    assert_type(beta_ledger.operation("PURCHASE"), BetaOperation)


def queries() -> None:
    entry = alpha_ledger.entry_model.objects.get(pk=1)
    assert_type(entry, AlphaEntry)
    assert_type(alpha_ledger.entry_model.objects.filter(user_id=1).first(), AlphaEntry | None)
    assert_type(alpha_ledger.balance_model.objects.get(pk=1), AlphaBalance)
    assert_type(entry_list(ledger=alpha_ledger, user_id=1).get(pk=1), AlphaEntry)
    assert_type(balance_list(ledger=alpha_ledger).get(pk=1), AlphaBalance)


def services() -> None:
    result = entry_post(ledger=alpha_ledger, user_id=1, operation=AlphaOperation.GAME_WIN, amount=5)
    assert_type(result, PostResult[AlphaEntry])
    assert_type(result.entry, AlphaEntry)
    assert_type(result.replayed, bool)
    shared = entry_post(
        ledger=alpha_ledger,
        user_id=1,
        operation=alpha_ledger.shared(SharedOperation.DAILY_REWARD),
    )
    assert_type(shared.entry, AlphaEntry)
    beta = entry_post(ledger=beta_ledger, user_id=1, operation=BetaOperation.PURCHASE, amount=3)
    assert_type(beta.entry, BetaEntry)
    reversal = entry_reverse(ledger=alpha_ledger, entry_id=result.entry.pk, reason="typo")
    assert_type(reversal, AlphaEntry)
    summary = grant_bulk(
        ledger=alpha_ledger, operation=AlphaOperation.DAILY_REWARD, user_ids=[1, 2]
    )
    assert_type(summary, GrantSummary)


def holds() -> None:
    placed = hold_place(
        ledger=alpha_ledger, user_id=1, operation=AlphaOperation.GAME_ENTRY_FEE, amount=5
    )
    assert_type(placed, HoldResult)
    assert_type(placed.hold, AbstractHold)
    assert_type(placed.replayed, bool)
    captured = hold_capture(ledger=alpha_ledger, hold_id=placed.hold.pk, amount=2)
    assert_type(captured.hold, AbstractHold)
    assert_type(hold_release(ledger=beta_ledger, hold_id=1), HoldResult)


def generic_code(label: str, text: str) -> None:
    # Code that does not know the ledger (commands, the API) gets Any, and parses strings once.
    ledger = registry.get(label)
    assert_type(ledger, AnyLedger)
    result = entry_post(ledger=ledger, user_id=1, operation=ledger.operation(text), amount=1)
    assert_type(result, PostResult[Any])

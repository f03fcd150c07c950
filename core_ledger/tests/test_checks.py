"""Each system check fires on the broken declaration it is there for (and not on the real ones)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.test.utils import isolate_apps
from django.utils.translation import gettext_lazy as _

from core_ledger.checks import check_ledger, check_ledgers
from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy, registry
from core_ledger.models import (
    AbstractBalance,
    AbstractLedgerEntry,
    operation_check,
    operation_field,
)
from core_ledger.operations import LedgerOperation

# The core names no app: the alpha ledger is reached through the registry, as any ledger is.
alpha = registry.get("alpha")


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return sorted({str(m.id) for m in messages})


def declare(**changes: Any) -> Ledger[Any, Any, Any]:
    fields: dict[str, Any] = {
        "label": "broken",
        "name": "Broken",
        "entry_model": alpha.entry_model,
        "balance_model": alpha.balance_model,
        "operations": alpha.operations,
        "lot_model": alpha.lot_model,
        "hold_model": alpha.hold_model,
        "rules": alpha.rules,
        "fixed_amounts": alpha.fixed_amounts,
    }
    return Ledger(**{**fields, **changes})


def test_the_real_ledgers_pass_every_check() -> None:
    assert check_ledgers() == []
    for ledger in registry:
        assert check_ledger(ledger) == []


def test_a_lacking_or_reordered_shared_member_is_e010() -> None:
    class NoSpend(LedgerOperation):
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")
        GAME_WIN = "GAME_WIN", _("Game win")
        GAME_ENTRY_FEE = "GAME_ENTRY_FEE", _("Game entry fee")

    messages = check_ledger(declare(operations=NoSpend))
    assert "core_ledger.E010" in ids(messages)
    e010 = next(m for m in messages if m.id == "core_ledger.E010")
    assert "CREDIT_SPEND" in e010.msg and e010.hint


def test_a_changed_shared_label_is_e010() -> None:
    class Relabelled(LedgerOperation):
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Welcome gift")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")
        GAME_WIN = "GAME_WIN", _("Game win")
        GAME_ENTRY_FEE = "GAME_ENTRY_FEE", _("Game entry fee")

    assert "core_ledger.E010" in ids(check_ledger(declare(operations=Relabelled)))


def test_operations_that_are_not_a_ledgeroperation_class_are_e011() -> None:
    assert "core_ledger.E011" in ids(check_ledger(declare(operations=dict)))


def test_a_rule_for_an_operation_the_class_lacks_is_e020() -> None:
    rules = {**alpha.rules, "QUIZ_PASS": OperationRule(Direction.CREDIT, PostedBy.STAFF)}
    messages = check_ledger(declare(rules=rules))
    assert ids(messages) == ["core_ledger.E020"]
    assert "QUIZ_PASS" in messages[0].msg


def test_an_own_operation_without_a_rule_is_e021() -> None:
    messages = check_ledger(declare(rules={}))
    assert ids(messages) == ["core_ledger.E021"]
    assert "GAME_ENTRY_FEE" in messages[0].msg and "GAME_WIN" in messages[0].msg


@pytest.mark.parametrize("amount", ["ten", 0, -5, 2.5, True, None])
def test_a_declared_fixed_amount_that_is_not_a_positive_integer_is_e030(amount: Any) -> None:
    ledger = declare(fixed_amounts={alpha.operations.DAILY_REWARD: amount})
    assert ids(check_ledger(ledger)) == ["core_ledger.E030"]


@pytest.mark.parametrize(
    "configured",
    [{"alpha": {"DAILY_REWARD": "ten"}}, {"alpha": {"SIGNUP_CREDIT": 0}}, {"alpha": 5}, []],
)
def test_a_configured_fixed_amount_that_is_not_a_positive_integer_is_e030(configured: Any) -> None:
    with override_settings(SHARED_LEDGER_FIXED_AMOUNTS=configured):
        assert "core_ledger.E030" in ids(check_ledgers())
        with pytest.raises(SystemCheckError, match=r"core_ledger\.E030"):
            call_command("check")


@pytest.fixture
def duplicate() -> Iterator[Ledger[Any, Any, Any]]:
    clone = declare(label="alpha")
    registry.register(clone)
    yield clone
    registry.duplicates.remove(clone)


def test_two_ledgers_with_one_label_are_e040(duplicate: Ledger[Any, Any, Any]) -> None:
    assert registry.get("alpha") is alpha  # the first declaration keeps serving
    messages = [m for m in check_ledgers() if m.id == "core_ledger.E040"]
    assert len(messages) == 1 and "'alpha'" in messages[0].msg


@isolate_apps("app_alpha")
def test_an_entry_model_that_dropped_the_core_guards_is_e050_e051_e052() -> None:
    class CarelessEntry(AbstractLedgerEntry):
        operation = operation_field(alpha.operations)

        class Meta:  # pyright: ignore[reportIncompatibleVariableOverride]  # deliberately not the core's Meta
            app_label = "app_alpha"
            # Replaces the core's lists instead of extending them: loses the idempotency,
            # once-a-day and non-negative guards, the indexes and the append-only trigger.
            constraints = [operation_check(alpha.operations)]
            indexes: ClassVar[list[Any]] = []
            triggers: ClassVar[list[Any]] = []

    messages = check_ledger(declare(entry_model=CarelessEntry))
    # E004 too: alpha's hold model names alpha's entry model, not this one.
    assert ids(messages) == [
        "core_ledger.E004",
        "core_ledger.E050",
        "core_ledger.E051",
        "core_ledger.E052",
    ]
    e050 = next(m for m in messages if m.id == "core_ledger.E050")
    for lost in ("idempotency_key", "daily_once", "signup_once", "balance_after_nonneg"):
        assert lost in e050.msg
    assert "*AbstractLedgerEntry.Meta.constraints" in (e050.hint or "")


@isolate_apps("app_alpha")
def test_a_balance_model_without_the_nonnegative_check_is_e050() -> None:
    class CarelessBalance(AbstractBalance):
        class Meta:  # pyright: ignore[reportIncompatibleVariableOverride]  # deliberately not the core's Meta
            app_label = "app_alpha"
            constraints: ClassVar[list[Any]] = []

    messages = check_ledger(declare(balance_model=CarelessBalance))
    assert ids(messages) == ["core_ledger.E050"]
    assert "carelessbalance_nonneg" in messages[0].msg


@isolate_apps("app_alpha")
def test_an_entry_model_with_other_choices_is_e003() -> None:
    class OtherChoices(AbstractLedgerEntry):
        class Meta(AbstractLedgerEntry.Meta):
            app_label = "app_alpha"

    assert "core_ledger.E003" in ids(check_ledger(declare(entry_model=OtherChoices)))


def test_models_that_are_not_the_core_abstract_models_are_e001_e002() -> None:
    messages = check_ledger(
        declare(entry_model=alpha.balance_model, balance_model=alpha.entry_model)
    )
    assert {"core_ledger.E001", "core_ledger.E002"} <= set(ids(messages))


@pytest.mark.parametrize(
    "lifetimes",
    [
        {alpha.operations.DAILY_REWARD: timedelta(0)},
        {alpha.operations.DAILY_REWARD: 3600},  # seconds belong in settings, not the declaration
        {alpha.operations.CREDIT_SPEND: timedelta(days=1)},  # a debit does not expire
    ],
)
def test_a_bad_declared_lifetime_is_e031(lifetimes: Any) -> None:
    assert ids(check_ledger(declare(expires_after=lifetimes))) == ["core_ledger.E031"]


@pytest.mark.parametrize(
    "configured", [{"alpha": {"DAILY_REWARD": "week"}}, {"alpha": {"DAILY_REWARD": -1}}, [1]]
)
def test_a_bad_configured_lifetime_is_e031(configured: Any) -> None:
    with override_settings(SHARED_LEDGER_EXPIRES_AFTER=configured):
        assert "core_ledger.E031" in ids(check_ledgers())


def test_a_hold_model_that_is_not_a_hold_or_not_this_ledgers_is_e004() -> None:
    beta = registry.get("beta")
    assert "core_ledger.E004" in ids(check_ledger(declare(hold_model=alpha.lot_model)))
    assert "core_ledger.E004" in ids(check_ledger(declare(hold_model=beta.hold_model)))

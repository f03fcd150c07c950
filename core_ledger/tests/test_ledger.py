"""The ledger declaration and the registry."""

import pytest
from django.test import override_settings

from core_ledger.exceptions import UnknownLedger
from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy, registry
from core_ledger.operations import SharedOperation


def test_registry_has_both_apps_ledgers() -> None:
    assert {"alpha", "beta"} <= set(registry.labels())


def test_unknown_ledger_is_a_not_found_error() -> None:
    with pytest.raises(UnknownLedger) as info:
        registry.get("nope")
    assert info.value.code == "not_found"
    assert "alpha" in info.value.message


def test_every_operation_has_a_rule(ledger: Ledger) -> None:
    assert set(ledger.rules) == set(ledger.operations.values)
    assert ledger.rule(SharedOperation.CREDIT_ADD).posted_by is PostedBy.STAFF
    assert ledger.rule(SharedOperation.CREDIT_SPEND).direction is Direction.DEBIT


def test_fixed_amounts_come_from_settings_first(ledger: Ledger) -> None:
    declared = ledger.fixed_amount(SharedOperation.DAILY_REWARD)
    assert declared and declared > 0
    with override_settings(SHARED_LEDGER_FIXED_AMOUNTS={ledger.label: {"DAILY_REWARD": 77}}):
        assert ledger.fixed_amount(SharedOperation.DAILY_REWARD) == 77
    assert ledger.fixed_amount(SharedOperation.CREDIT_ADD) is None


def test_a_declaration_must_cover_its_operations_exactly(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="without a rule"):
        Ledger(
            label="broken",
            name="Broken",
            entry_model=ledger.entry_model,
            balance_model=ledger.balance_model,
            operations=ledger.operations,
            rules={},
        )
    with pytest.raises(ValueError, match="redeclares shared"):
        Ledger(
            label="broken",
            name="Broken",
            entry_model=ledger.entry_model,
            balance_model=ledger.balance_model,
            operations=ledger.operations,
            rules={SharedOperation.CREDIT_ADD: OperationRule(Direction.CREDIT, PostedBy.USER)},
        )


def test_registering_a_second_ledger_with_the_same_label_fails(ledger: Ledger) -> None:
    clone = Ledger(
        label=ledger.label,
        name="Clone",
        entry_model=ledger.entry_model,
        balance_model=ledger.balance_model,
        operations=ledger.operations,
        rules={k: v for k, v in ledger.rules.items() if k not in SharedOperation.values},
    )
    with pytest.raises(ValueError, match="registered already"):
        registry.register(clone)

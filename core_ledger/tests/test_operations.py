"""SharedOperation and the helper that builds each app's own TextChoices."""

import pytest
from django.db import models

from core_ledger.ledger import registry
from core_ledger.operations import SharedOperation, extend_operations


def test_extend_keeps_shared_members_first_then_own() -> None:
    ops = extend_operations("GammaOperation", BONUS="Bonus", FEE="Fee")
    assert issubclass(ops, models.TextChoices)
    assert list(ops.values) == [*SharedOperation.values, "BONUS", "FEE"]
    assert ops.BONUS.label == "Bonus"
    assert ops.DAILY_REWARD.label == SharedOperation.DAILY_REWARD.label
    assert ops.DAILY_REWARD == "DAILY_REWARD"


@pytest.mark.parametrize("name", ["lower", "9START", "WITH-DASH", "X" * 65])
def test_extend_refuses_badly_named_operations(name: str) -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        extend_operations("Bad", **{name: "Label"})


def test_extend_refuses_redeclaring_a_shared_operation() -> None:
    with pytest.raises(ValueError, match="shared already"):
        extend_operations("Bad", CREDIT_ADD="Again")


def test_every_ledger_uses_its_operations_as_the_field_choices() -> None:
    for ledger in registry:
        field = ledger.entry_model._meta.get_field("operation")
        assert [value for value, _ in field.choices] == list(ledger.operations.values)
        assert set(SharedOperation.values) <= set(ledger.operations.values)

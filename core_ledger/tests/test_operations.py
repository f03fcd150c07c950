"""SharedOperation, the LedgerOperation base, and the check that an app's class restates the
shared members first, unchanged."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from core_ledger.ledger import registry
from core_ledger.operations import LedgerOperation, SharedOperation, shared_members_problem


class GoodOperation(LedgerOperation):
    DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
    SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
    CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
    CREDIT_ADD = "CREDIT_ADD", _("Credit add")
    REVERSAL = "REVERSAL", _("Reversal")
    EXPIRY = "EXPIRY", _("Expiry")
    BONUS = "BONUS", _("Bonus")


def test_an_operations_class_is_a_textchoices_with_shared_members_first() -> None:
    assert issubclass(GoodOperation, models.TextChoices)
    assert list(GoodOperation.values) == [*SharedOperation.values, "BONUS"]
    # Members of two TextChoices classes are equal strings; mypy deems enum literals disjoint.
    assert GoodOperation.DAILY_REWARD == SharedOperation.DAILY_REWARD == "DAILY_REWARD"  # type: ignore[comparison-overlap]
    assert shared_members_problem(GoodOperation) is None


def test_a_missing_shared_member_is_named() -> None:
    class Missing(LedgerOperation):
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")

    assert shared_members_problem(Missing) == "lacks the shared member CREDIT_ADD"


def test_reordered_shared_members_are_refused() -> None:
    class Reordered(LedgerOperation):
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")

    problem = shared_members_problem(Reordered)
    assert problem is not None and "SIGNUP_CREDIT where the shared member DAILY_REWARD" in problem


def test_a_changed_shared_value_or_label_is_refused() -> None:
    class Relabelled(LedgerOperation):
        DAILY_REWARD = "DAILY_REWARD", _("Daily bonus")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")

    class Revalued(LedgerOperation):
        DAILY_REWARD = "DAILY", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")

    assert "label 'Daily bonus'" in (shared_members_problem(Relabelled) or "")
    assert "value 'DAILY'" in (shared_members_problem(Revalued) or "")


def test_own_members_must_be_upper_snake_case_named_as_their_value() -> None:
    class BadName(LedgerOperation):
        DAILY_REWARD = "DAILY_REWARD", _("Daily reward")
        SIGNUP_CREDIT = "SIGNUP_CREDIT", _("Signup credit")
        CREDIT_SPEND = "CREDIT_SPEND", _("Credit spend")
        CREDIT_ADD = "CREDIT_ADD", _("Credit add")
        REVERSAL = "REVERSAL", _("Reversal")
        EXPIRY = "EXPIRY", _("Expiry")
        BONUS = "bonus", _("Bonus")

    assert "BONUS must be UPPER_SNAKE_CASE" in (shared_members_problem(BadName) or "")


def test_every_ledger_uses_its_operations_as_the_field_choices() -> None:
    for ledger in registry:
        field = ledger.entry_model._meta.get_field("operation")
        assert [value for value, _ in field.choices] == list(ledger.operations.values)
        assert shared_members_problem(ledger.operations) is None

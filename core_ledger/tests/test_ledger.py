"""The ledger declaration and the registry."""

import pytest
from django.test import override_settings

from core_ledger.exceptions import UnknownLedger
from core_ledger.ledger import AnyLedger, Direction, PostedBy, registry
from core_ledger.operations import SharedOperation


def test_registry_has_both_apps_ledgers() -> None:
    assert {"alpha", "beta"} <= set(registry.labels())


def test_unknown_ledger_is_a_not_found_error() -> None:
    with pytest.raises(UnknownLedger) as info:
        registry.get("nope")
    assert info.value.code == "not_found"
    assert "alpha" in info.value.message


def test_every_operation_has_a_rule(ledger: AnyLedger) -> None:
    assert set(ledger.operation_rules) == set(ledger.operations.values)
    assert ledger.rule(SharedOperation.CREDIT_ADD).posted_by is PostedBy.STAFF
    assert ledger.rule(SharedOperation.CREDIT_SPEND).direction is Direction.DEBIT


def test_fixed_amounts_come_from_settings_first(ledger: AnyLedger) -> None:
    declared = ledger.fixed_amount(SharedOperation.DAILY_REWARD)
    assert declared and declared > 0
    with override_settings(SHARED_LEDGER_FIXED_AMOUNTS={ledger.label: {"DAILY_REWARD": 77}}):
        assert ledger.fixed_amount(SharedOperation.DAILY_REWARD) == 77
    # The core caches its settings until Django says one changed: back to the declaration.
    assert ledger.fixed_amount(SharedOperation.DAILY_REWARD) == declared
    assert ledger.fixed_amount(SharedOperation.CREDIT_ADD) is None


def test_a_setting_left_unset_is_looked_up_once_until_a_setting_changes() -> None:
    """A setting left unset is cached as such: a post reads settings that are usually unset,
    and each would otherwise cost a failed look-up on Django's settings on every post."""
    from django.conf import settings

    from core_ledger.conf import app_settings

    name = "SHARED_LEDGER_DATABASE"  # read by every post (the write alias); unset here
    assert not hasattr(settings, name)
    app_settings.clear_cache()
    assert app_settings.DATABASE is None
    setattr(settings, name, "ledger")  # assigned directly: no setting_changed
    try:
        assert app_settings.DATABASE is None  # still the cached "unset"
        app_settings.clear_cache()
        assert app_settings.DATABASE == "ledger"
    finally:
        delattr(settings, name)
        app_settings.clear_cache()
    assert app_settings.DATABASE is None


def test_outside_strings_become_members_once_at_the_edge(ledger: AnyLedger) -> None:
    member = ledger.operation("CREDIT_ADD")
    assert type(member) is ledger.operations
    assert member is ledger.shared(SharedOperation.CREDIT_ADD)


def test_an_unknown_operation_string_is_a_validation_error(ledger: AnyLedger) -> None:
    from core_ledger.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        ledger.operation("NOT_AN_OP")
    assert info.value.code == "validation_error"
    assert "CREDIT_ADD" in str(info.value.details["operation"])


def test_the_write_alias_comes_from_the_routers_or_the_setting(ledger: AnyLedger) -> None:
    assert ledger.db_alias == "default"
    with override_settings(SHARED_LEDGER_DATABASE="ledger"):
        assert ledger.db_alias == "ledger"

"""Beta's own operations follow the rules its declaration gives them."""

import pytest

from app_beta.models import BetaEntry
from app_beta.operations import BetaOperation
from core_ledger.exceptions import OperationNotAllowed
from core_ledger.ledger import Direction, PostedBy, registry
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db
ledger = registry.get("beta")


def test_operations_extend_the_shared_ones() -> None:
    assert BetaOperation.REFERRAL_BONUS == "REFERRAL_BONUS"
    assert BetaOperation.DAILY_REWARD == "DAILY_REWARD"
    assert ledger.entry_model is BetaEntry
    assert ledger.rule(BetaOperation.REFERRAL_BONUS).direction is Direction.CREDIT
    assert ledger.rule(BetaOperation.REFERRAL_BONUS).posted_by is PostedBy.STAFF
    assert ledger.rule(BetaOperation.PURCHASE).direction is Direction.DEBIT
    assert ledger.rule(BetaOperation.PURCHASE).posted_by is PostedBy.USER


def test_staff_credits_and_the_user_pays() -> None:
    staff, player = make_user(staff=True, operator=True), make_user()
    start = balance_get(ledger=ledger, user_id=player.pk)
    win = entry_post(
        ledger=ledger,
        user_id=player.pk,
        operation=BetaOperation.REFERRAL_BONUS,
        amount=30,
        actor=staff,
    )
    fee = entry_post(
        ledger=ledger, user_id=player.pk, operation=BetaOperation.PURCHASE, amount=12, actor=player
    )
    assert (win.entry.amount, fee.entry.amount) == (30, -12)
    assert balance_get(ledger=ledger, user_id=player.pk) == start + 18
    assert (
        BetaEntry.objects.filter(user=player, operation=BetaOperation.REFERRAL_BONUS).count() == 1
    )


def test_a_user_cannot_credit_themself() -> None:
    player = make_user()
    with pytest.raises(OperationNotAllowed):
        entry_post(
            ledger=ledger,
            user_id=player.pk,
            operation=BetaOperation.REFERRAL_BONUS,
            amount=30,
            actor=player,
        )
    assert not BetaEntry.objects.filter(
        user=player, operation=BetaOperation.REFERRAL_BONUS
    ).exists()


def test_the_other_ledger_is_untouched() -> None:
    player = make_user()
    other = next(lg for lg in registry if lg.label != "beta")
    before = balance_get(ledger=other, user_id=player.pk)
    entry_post(
        ledger=ledger, user_id=player.pk, operation=BetaOperation.PURCHASE, amount=1, actor=player
    )
    assert balance_get(ledger=other, user_id=player.pk) == before

"""Alpha's own operations follow the rules its declaration gives them."""

import pytest

from app_alpha.models import AlphaEntry
from app_alpha.operations import AlphaOperation
from core_ledger.exceptions import OperationNotAllowed
from core_ledger.ledger import Direction, PostedBy, registry
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.testing import make_user

pytestmark = pytest.mark.django_db
ledger = registry.get("alpha")


def test_operations_extend_the_shared_ones() -> None:
    assert AlphaOperation.GAME_WIN == "GAME_WIN"
    assert AlphaOperation.DAILY_REWARD == "DAILY_REWARD"
    assert ledger.entry_model is AlphaEntry
    assert ledger.rule(AlphaOperation.GAME_WIN).direction is Direction.CREDIT
    assert ledger.rule(AlphaOperation.GAME_WIN).posted_by is PostedBy.STAFF
    assert ledger.rule(AlphaOperation.GAME_ENTRY_FEE).direction is Direction.DEBIT
    assert ledger.rule(AlphaOperation.GAME_ENTRY_FEE).posted_by is PostedBy.USER


def test_staff_credits_and_the_user_pays() -> None:
    staff, player = make_user(staff=True, operator=True), make_user()
    start = balance_get(ledger=ledger, user_id=player.pk)
    win = entry_post(
        ledger=ledger, user_id=player.pk, operation=AlphaOperation.GAME_WIN, amount=30, actor=staff
    )
    fee = entry_post(
        ledger=ledger,
        user_id=player.pk,
        operation=AlphaOperation.GAME_ENTRY_FEE,
        amount=12,
        actor=player,
    )
    assert (win.entry.amount, fee.entry.amount) == (30, -12)
    assert balance_get(ledger=ledger, user_id=player.pk) == start + 18
    assert AlphaEntry.objects.filter(user=player, operation=AlphaOperation.GAME_WIN).count() == 1


def test_a_user_cannot_credit_themself() -> None:
    player = make_user()
    with pytest.raises(OperationNotAllowed):
        entry_post(
            ledger=ledger,
            user_id=player.pk,
            operation=AlphaOperation.GAME_WIN,
            amount=30,
            actor=player,
        )
    assert not AlphaEntry.objects.filter(user=player, operation=AlphaOperation.GAME_WIN).exists()


def test_the_other_ledger_is_untouched() -> None:
    player = make_user()
    other = next(lg for lg in registry if lg.label != "alpha")
    before = balance_get(ledger=other, user_id=player.pk)
    entry_post(
        ledger=ledger,
        user_id=player.pk,
        operation=AlphaOperation.GAME_ENTRY_FEE,
        amount=1,
        actor=player,
    )
    assert balance_get(ledger=other, user_id=player.pk) == before

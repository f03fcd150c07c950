from core_ledger.ledger import Ledger
from core_ledger.selectors import balance_get


def test_new_user_gets_signup_credit(ledger: Ledger, user) -> None:
    assert balance_get(ledger=ledger, user_id=user.pk) == ledger.fixed_amount("SIGNUP_CREDIT")

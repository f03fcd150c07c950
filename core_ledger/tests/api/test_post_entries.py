"""POST /api/<ledger>/entries/: who may post what, input shapes, fixed amounts, mass assignment."""

from __future__ import annotations

from typing import Any

import pytest

from core_ledger.ledger import AnyLedger, PostedBy
from core_ledger.operations import SharedOperation
from core_ledger.selectors import balance_get
from core_ledger.services import MAX_AMOUNT
from core_ledger.testing import make_user, set_balance
from core_ledger.tests.api.conftest import error_code, token_client, url

pytestmark = pytest.mark.django_db

ENTRY_FIELDS = {
    "id",
    "user",
    "operation",
    "amount",
    "balance_after",
    "description",
    "metadata",
    "idempotency_key",
    "reverses",
    "reversed_by",
    "created_by",
    "created_at",
    "expires_at",
    "drawn_from",
    "hold",
}


def _count(ledger: AnyLedger) -> int:
    return int(ledger.entry_model.objects.count())


def test_user_claims_daily_reward(ledger: AnyLedger, user: Any, api: Any) -> None:
    before = balance_get(ledger=ledger, user_id=user.pk)
    fixed = ledger.fixed_amount(SharedOperation.DAILY_REWARD)
    assert fixed is not None
    response = api.post(url(ledger, "entries/"), {"operation": "DAILY_REWARD"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ENTRY_FIELDS
    assert body["user"] == user.pk
    assert body["created_by"] == user.pk
    assert body["amount"] == fixed
    assert body["balance_after"] == before + fixed
    assert body["reverses"] is None and body["reversed_by"] is None
    assert "Idempotent-Replayed" not in response.headers
    assert balance_get(ledger=ledger, user_id=user.pk) == before + fixed

    again = api.post(url(ledger, "entries/"), {"operation": "DAILY_REWARD"}, format="json")
    assert again.status_code == 409
    assert error_code(again) == "already_claimed"
    assert balance_get(ledger=ledger, user_id=user.pk) == before + fixed


def test_user_spends_and_amount_is_signed(ledger: AnyLedger, user: Any, api: Any) -> None:
    set_balance(ledger=ledger, user=user, to=30)
    response = api.post(
        url(ledger, "entries/"),
        {
            "operation": "CREDIT_SPEND",
            "amount": 12,
            "description": "a hat",
            "metadata": {"sku": "h1"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["amount"] == -12
    assert body["balance_after"] == 18
    assert body["description"] == "a hat"
    assert body["metadata"] == {"sku": "h1"}
    assert balance_get(ledger=ledger, user_id=user.pk) == 18


def test_spend_beyond_balance_is_409_and_writes_nothing(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=5)
    count = _count(ledger)
    response = api.post(
        url(ledger, "entries/"), {"operation": "CREDIT_SPEND", "amount": 6}, format="json"
    )
    assert response.status_code == 409
    assert error_code(response) == "insufficient_credits"
    assert response.json()["error"]["details"]["balance"] == 5
    assert _count(ledger) == count
    assert balance_get(ledger=ledger, user_id=user.pk) == 5


def test_user_sending_own_id_is_accepted(ledger: AnyLedger, user: Any, api: Any) -> None:
    response = api.post(
        url(ledger, "entries/"), {"operation": "DAILY_REWARD", "user": user.pk}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["user"] == user.pk


def test_user_cannot_post_for_another_user(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    count = _count(ledger)
    for body in (
        {"operation": "DAILY_REWARD", "user": other_user.pk},
        {"operation": "CREDIT_SPEND", "amount": 1, "user": other_user.pk},
    ):
        response = api.post(url(ledger, "entries/"), body, format="json")
        assert response.status_code == 403
        assert error_code(response) == "operation_not_allowed"
    assert _count(ledger) == count


def test_a_regular_user_cannot_tell_which_user_ids_exist(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    body = {"operation": "CREDIT_SPEND", "amount": 1}
    real = api.post(url(ledger, "entries/"), {**body, "user": other_user.pk}, format="json")
    ghost = api.post(url(ledger, "entries/"), {**body, "user": 2**62}, format="json")
    assert (real.status_code, ghost.status_code) == (403, 403)
    assert real.json() == ghost.json()


def test_user_cannot_post_staff_operations(ledger: AnyLedger, user: Any, api: Any) -> None:
    staff_ops = [
        op for op, rule in ledger.operation_rules.items() if rule.posted_by is PostedBy.STAFF
    ]
    assert SharedOperation.CREDIT_ADD in staff_ops
    count = _count(ledger)
    for op in staff_ops:
        response = api.post(url(ledger, "entries/"), {"operation": op, "amount": 5}, format="json")
        assert response.status_code == 403, op
        assert error_code(response) == "operation_not_allowed"
    assert _count(ledger) == count


@pytest.mark.parametrize("operation", ["REVERSAL", "SIGNUP_CREDIT"])
def test_system_operations_cannot_be_posted(
    ledger: AnyLedger, staff: Any, staff_api: Any, user: Any, operation: str
) -> None:
    """Only the ledger posts these; documented as a validation_error (not a postable choice)."""
    count = _count(ledger)
    response = staff_api.post(
        url(ledger, "entries/"), {"operation": operation, "user": user.pk}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "operation" in response.json()["error"]["details"]
    assert _count(ledger) == count


def test_staff_credits_any_user(ledger: AnyLedger, staff: Any, staff_api: Any, user: Any) -> None:
    before = balance_get(ledger=ledger, user_id=user.pk)
    response = staff_api.post(
        url(ledger, "entries/"),
        {"operation": "CREDIT_ADD", "amount": 250, "user": user.pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["user"] == user.pk
    assert response.json()["created_by"] == staff.pk
    assert balance_get(ledger=ledger, user_id=user.pk) == before + 250


def test_staff_must_name_the_user(ledger: AnyLedger, staff: Any, staff_api: Any) -> None:
    count = _count(ledger)
    response = staff_api.post(
        url(ledger, "entries/"), {"operation": "CREDIT_ADD", "amount": 5}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "user" in response.json()["error"]["details"]
    assert _count(ledger) == count


def test_service_account_posts_anything_for_anyone(
    ledger: AnyLedger, service: Any, user: Any
) -> None:
    client = token_client(service)
    assert not service.is_staff
    for op, rule in ledger.operation_rules.items():
        if rule.posted_by is PostedBy.SYSTEM or rule.fixed or rule.direction is None:
            continue
        set_balance(ledger=ledger, user=user, to=100)
        response = client.post(
            url(ledger, "entries/"), {"operation": op, "amount": 3, "user": user.pk}, format="json"
        )
        assert response.status_code == 201, (op, response.content)
        assert response.json()["created_by"] == service.pk
    # DAILY_REWARD for someone else, too.
    response = client.post(
        url(ledger, "entries/"), {"operation": "DAILY_REWARD", "user": user.pk}, format="json"
    )
    assert response.status_code == 201


def test_service_of_another_ledger_is_a_regular_user_here(ledger: AnyLedger, user: Any) -> None:
    from core_ledger.ledger import registry

    other = next(x for x in registry if x.label != ledger.label)
    from django.contrib.auth.models import Permission

    account = make_user()
    app_label, codename = other.post_permission.split(".")
    account.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    response = token_client(account).post(
        url(ledger, "entries/"),
        {"operation": "CREDIT_ADD", "amount": 3, "user": user.pk},
        format="json",
    )
    assert response.status_code == 403
    assert error_code(response) == "operation_not_allowed"


def test_fixed_amount_operations_refuse_a_client_amount(
    ledger: AnyLedger, user: Any, api: Any
) -> None:
    count = _count(ledger)
    response = api.post(
        url(ledger, "entries/"), {"operation": "DAILY_REWARD", "amount": 1000}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "amount" in response.json()["error"]["details"]
    assert _count(ledger) == count


def test_missing_amount_is_a_validation_error(ledger: AnyLedger, user: Any, api: Any) -> None:
    response = api.post(url(ledger, "entries/"), {"operation": "CREDIT_SPEND"}, format="json")
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "amount" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    "amount",
    [
        0,
        -5,
        1.5,
        2.0,
        "5",
        "abc",
        True,
        False,
        None,
        [],
        {},
        MAX_AMOUNT + 1,
        2**63,
        2**64 + 7,
        10**40,
    ],
)
def test_bad_amounts_are_400_never_500(ledger: AnyLedger, user: Any, api: Any, amount: Any) -> None:
    set_balance(ledger=ledger, user=user, to=50)
    count = _count(ledger)
    response = api.post(
        url(ledger, "entries/"), {"operation": "CREDIT_SPEND", "amount": amount}, format="json"
    )
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert "amount" in response.json()["error"]["details"]
    assert _count(ledger) == count
    assert balance_get(ledger=ledger, user_id=user.pk) == 50


@pytest.mark.parametrize("user_value", [0, -1, "1", 1.0, True, 2**63, 10**30, [1]])
def test_bad_user_values_are_400(ledger: AnyLedger, staff_api: Any, user_value: Any) -> None:
    count = _count(ledger)
    response = staff_api.post(
        url(ledger, "entries/"),
        {"operation": "CREDIT_ADD", "amount": 1, "user": user_value},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert "user" in response.json()["error"]["details"]
    assert _count(ledger) == count


def test_unknown_user_is_400(ledger: AnyLedger, staff_api: Any) -> None:
    for op in ("CREDIT_ADD", "CREDIT_SPEND"):
        response = staff_api.post(
            url(ledger, "entries/"),
            {"operation": op, "amount": 1, "user": 2**62},
            format="json",
        )
        assert response.status_code == 400
        assert error_code(response) == "validation_error"
        assert response.json()["error"]["details"]["user"] == ["No such user."]


@pytest.mark.parametrize(
    "operation", ["NOPE", "", None, 5, ["CREDIT_SPEND"], "credit_spend", "CREDIT_SPEND\x00"]
)
def test_bad_operations_are_400(ledger: AnyLedger, api: Any, operation: Any) -> None:
    response = api.post(
        url(ledger, "entries/"), {"operation": operation, "amount": 1}, format="json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert "operation" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", "x" * 501),
        ("description", "nul\x00byte"),
        ("description", {"a": 1}),
        ("description", 12.5),
        ("metadata", [1, 2]),
        ("metadata", "text"),
        ("metadata", {f"k{i}": i for i in range(21)}),
        ("metadata", {"k" * 65: 1}),
        ("metadata", {"k": "v" * 501}),
        ("metadata", {"k": ["v" * 400] * 12}),
        ("metadata", {"k": "nul\x00"}),
        # The limits hold at every depth, and the depth itself is limited.
        ("metadata", {"outer": {"inner": "v" * 600}}),
        ("metadata", {"outer": {"k" * 100: 1}}),
        ("metadata", {"list": [{"deep": "v" * 501}]}),
        ("metadata", {"outer": {f"k{i}": i for i in range(21)}}),
        ("metadata", {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}),  # six levels of objects
        ("metadata", {"a": [[[[[1]]]]]}),  # an object and five levels of arrays: six
    ],
)
def test_description_and_metadata_limits(
    ledger: AnyLedger, user: Any, api: Any, field: str, value: Any
) -> None:
    set_balance(ledger=ledger, user=user, to=10)
    count = _count(ledger)
    response = api.post(
        url(ledger, "entries/"),
        {"operation": "CREDIT_SPEND", "amount": 1, field: value},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"
    assert field in response.json()["error"]["details"]
    assert _count(ledger) == count


@pytest.mark.parametrize(
    ("metadata", "accepted"),
    [
        ({f"k{i:02d}": i for i in range(20)}, True),  # 20 keys: the maximum
        ({"k" * 64: 1}, True),  # the longest key
        ({"k": "v" * 500}, True),  # the longest string value
        ({f"k{i}": "v" * 450 for i in range(10)}, False),  # each value fine, > 4096 bytes in all
        ({"": 1}, False),  # empty key
    ],
)
def test_metadata_limits_at_the_boundary(
    ledger: AnyLedger, staff_api: Any, user: Any, metadata: dict[str, Any], accepted: bool
) -> None:
    response = staff_api.post(
        url(ledger, "entries/"),
        {
            "operation": "CREDIT_ADD",
            "amount": MAX_AMOUNT,
            "user": user.pk,
            "description": "d" * 500,
            "metadata": metadata,
        },
        format="json",
    )
    if accepted:
        assert response.status_code == 201, response.content
        assert response.json()["amount"] == MAX_AMOUNT
        assert response.json()["metadata"] == metadata
    else:
        assert response.status_code == 400
        assert error_code(response) == "validation_error"
        assert "metadata" in response.json()["error"]["details"]


def test_server_owned_fields_are_ignored(
    ledger: AnyLedger, user: Any, other_user: Any, api: Any
) -> None:
    """Mass assignment: fields the server owns change nothing."""
    set_balance(ledger=ledger, user=user, to=40)
    victim = ledger.entry_model.objects.filter(user=other_user).first()
    assert victim is not None
    response = api.post(
        url(ledger, "entries/"),
        {
            "operation": "CREDIT_SPEND",
            "amount": 4,
            "id": 10**9,
            "balance_after": 999_999,
            "created_at": "2001-01-01T00:00:00Z",
            "created_by": other_user.pk,
            "reverses": victim.pk,
            "reversed_by": victim.pk,
            "idempotency_key": "from-body",
            "request_fingerprint": "x",
            "day": "2001-01-01",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != 10**9
    assert body["balance_after"] == 36
    assert body["created_by"] == user.pk
    assert body["reverses"] is None
    assert body["idempotency_key"] is None
    assert not body["created_at"].startswith("2001")
    entry = ledger.entry_model.objects.get(pk=body["id"])
    assert entry.balance_after == 36 and entry.reverses_id is None
    assert entry.idempotency_key is None and entry.created_by_id == user.pk
    assert not ledger.entry_model.objects.filter(reverses=victim).exists()


def test_invalid_json_is_400(ledger: AnyLedger, api: Any) -> None:
    response = api.generic(
        "POST", url(ledger, "entries/"), b'{"operation": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert error_code(response) == "validation_error"


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'"x"', b"null", b"1", b'{"amount": NaN, "operation": "CREDIT_SPEND"}', b"[" * 50_000],
)
def test_odd_json_bodies_are_400(ledger: AnyLedger, api: Any, raw: bytes) -> None:
    response = api.generic("POST", url(ledger, "entries/"), raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert error_code(response) == "validation_error"


def test_form_bodies_are_415(ledger: AnyLedger, api: Any) -> None:
    response = api.post(url(ledger, "entries/"), {"operation": "DAILY_REWARD"}, format="multipart")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_huge_body_is_refused_not_500(ledger: AnyLedger, user: Any, api: Any) -> None:
    count = _count(ledger)
    body = b'{"operation": "CREDIT_SPEND", "amount": 1, "description": "' + b"x" * 3_000_000 + b'"}'
    response = api.generic("POST", url(ledger, "entries/"), body, content_type="application/json")
    assert response.status_code in (400, 413)
    assert error_code(response) == "validation_error"
    assert _count(ledger) == count


def test_staff_alone_cannot_post_for_others_but_post_any_entry_can(
    ledger: AnyLedger, user: Any
) -> None:
    """is_staff only opens the admin; the ledger's post_any_entry permission is what posts."""
    from core_ledger.testing import make_user
    from core_ledger.tests.api.conftest import holding, token_client

    body = {"operation": "CREDIT_ADD", "amount": 5, "user": user.pk}
    callers = (make_user(staff=True), holding(ledger, "view_all_accounts", "reverse_entry"))
    before = ledger.entry_model.objects.filter(user=user).count()
    for caller in callers:
        response = token_client(caller).post(url(ledger, "entries/"), body, format="json")
        assert response.status_code == 403
        assert error_code(response) == "operation_not_allowed"
    assert ledger.entry_model.objects.filter(user=user).count() == before
    response = token_client(holding(ledger, "post_any_entry")).post(
        url(ledger, "entries/"), body, format="json"
    )
    assert response.status_code == 201
    assert response.json()["amount"] == 5


def test_nested_metadata_within_the_limits_is_accepted(
    ledger: AnyLedger, staff_api: Any, user: Any
) -> None:
    # Five levels (the most), a 500-character string and a 64-character key deep inside.
    metadata = {"a": {"b": {"c": {"d": {"e": "v" * 500}}}}, "tags": ["x", {"k" * 64: [1]}]}
    response = staff_api.post(
        url(ledger, "entries/"),
        {"operation": "CREDIT_ADD", "amount": 1, "user": user.pk, "metadata": metadata},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == metadata


def test_an_amount_with_thousands_of_digits_is_a_plain_validation_error(
    ledger: AnyLedger, api: Any
) -> None:
    count = _count(ledger)
    body = '{"operation": "CREDIT_SPEND", "amount": ' + "9" * 5000 + "}"
    response = api.post(url(ledger, "entries/"), body, content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    message = response.json()["error"]["message"]
    assert "too many digits" in message
    assert "sys." not in message and "set_int_max_str_digits" not in response.content.decode()
    assert _count(ledger) == count


def test_each_post_binds_its_own_copies_of_the_input_fields(ledger: AnyLedger) -> None:
    # The create serializer copies its declared fields shallowly (a post's speed): each
    # instance must still bind fields of its own, and the class's declared fields stay unbound,
    # or two concurrent requests would validate through each other's serializer.
    from rest_framework.fields import ChoiceField

    from core_ledger.api.serializers import entry_create_serializer_for

    cls = entry_create_serializer_for(ledger.label)
    first, second = cls(data={}), cls(data={})
    for name in ("operation", "amount", "user", "description", "metadata", "expires_at"):
        mine, theirs = first.fields[name], second.fields[name]
        assert mine is not theirs and mine is not cls._declared_fields[name]
        assert (mine.parent, theirs.parent) == (first, second)
        assert mine.field_name == theirs.field_name == name
        assert cls._declared_fields[name].field_name is None
    mine, theirs = first.fields["operation"], second.fields["operation"]
    assert isinstance(mine, ChoiceField) and isinstance(theirs, ChoiceField)
    assert mine.choices == theirs.choices

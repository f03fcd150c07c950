"""The reverse action and the post form go through the services and show their refusals."""

from __future__ import annotations

from typing import Any

from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from core_ledger.ledger import AnyLedger
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post
from core_ledger.testing import set_balance


def url(model: type[Any], view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _credit(ledger: AnyLedger, user: Any, amount: int) -> Any:
    return entry_post(ledger=ledger, user_id=user.pk, operation="CREDIT_ADD", amount=amount).entry


def test_reverse_action_asks_for_a_reason_then_reverses(
    staff_client: Client, staff: Any, ledger: AnyLedger, user: Any
) -> None:
    entry = _credit(ledger, user, 25)
    before = balance_get(ledger=ledger, user_id=user.pk)
    changelist = url(ledger.entry_model, "changelist")
    selection = {"action": "reverse_selected", "_selected_action": [entry.pk]}

    page = staff_client.post(changelist, {**selection, "index": 0})
    assert page.status_code == 200
    assert b'name="reason"' in page.content and f"#{entry.pk}".encode() in page.content
    assert not ledger.entry_model.objects.filter(reverses=entry).exists()

    # No reason: the page comes back with an error and nothing is written.
    again = staff_client.post(changelist, {**selection, "apply": "1", "reason": ""})
    assert again.status_code == 200 and b"This field is required" in again.content
    assert not ledger.entry_model.objects.filter(reverses=entry).exists()

    done = staff_client.post(changelist, {**selection, "apply": "1", "reason": "typo"})
    assert done.status_code == 302
    reversal = ledger.entry_model.objects.get(reverses=entry)
    assert reversal.amount == -25 and reversal.description == "typo"
    assert reversal.created_by_id == staff.pk
    assert balance_get(ledger=ledger, user_id=user.pk) == before - 25
    assert any(f"#{entry.pk} by #{reversal.pk}" in m for m in messages_of(done))

    # The changelist marks it reversed (the annotated flag).
    listed = staff_client.get(changelist).context["cl"].result_list
    assert {e.pk: e.is_reversed_flag for e in listed}[entry.pk] is True


def test_reverse_action_reports_refusals_and_writes_nothing_for_them(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    reversed_already = _credit(ledger, user, 5)
    staff_client.post(
        url(ledger.entry_model, "changelist"),
        {
            "action": "reverse_selected",
            "_selected_action": [reversed_already.pk],
            "apply": "1",
            "reason": "first",
        },
    )
    big = _credit(ledger, user, 40)
    set_balance(ledger=ledger, user=user, to=10)  # reversing the +40 would go below zero
    ok = _credit(ledger, user, 3)
    count = ledger.entry_model.objects.count()

    response = staff_client.post(
        url(ledger.entry_model, "changelist"),
        {
            "action": "reverse_selected",
            "_selected_action": [reversed_already.pk, big.pk, ok.pk],
            "apply": "1",
            "reason": "cleanup",
        },
    )
    texts = messages_of(response)
    assert any(t.startswith("Reversed 1 entries") and f"#{ok.pk}" in t for t in texts)
    assert any(f"#{reversed_already.pk}" in t and "already_reversed" in t for t in texts)
    assert any(f"#{big.pk}" in t and "insufficient_credits" in t for t in texts)
    assert ledger.entry_model.objects.count() == count + 1
    assert not ledger.entry_model.objects.filter(reverses=big).exists()


def test_post_form_posts_through_the_service(
    staff_client: Client, staff: Any, ledger: AnyLedger, user: Any
) -> None:
    post_url = url(ledger.entry_model, "post")
    form = staff_client.get(post_url + f"?user={user.pk}")
    assert form.status_code == 200 and f'value="{user.pk}"'.encode() in form.content
    choices = dict(form.context["form"].fields["operation"].choices)
    assert "CREDIT_ADD" in choices and "REVERSAL" not in choices and "SIGNUP_CREDIT" not in choices

    before = balance_get(ledger=ledger, user_id=user.pk)
    response = staff_client.post(
        post_url,
        {"user": user.username, "operation": "CREDIT_ADD", "amount": "12", "description": "hi"},
    )
    assert response.status_code == 302
    entry = ledger.entry_model.objects.filter(user=user).order_by("-id").first()
    assert (entry.operation, entry.amount, entry.created_by_id) == ("CREDIT_ADD", 12, staff.pk)
    assert balance_get(ledger=ledger, user_id=user.pk) == before + 12
    assert any(f"Posted entry #{entry.pk}" in m for m in messages_of(response))


def test_post_form_shows_domain_errors_and_writes_nothing(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    post_url = url(ledger.entry_model, "post")
    count = ledger.entry_model.objects.count()

    too_much = staff_client.post(
        post_url, {"user": user.username, "operation": "CREDIT_SPEND", "amount": "999999"}
    )
    assert too_much.status_code == 200
    assert "insufficient_credits" in str(too_much.context["form"].non_field_errors())

    fixed = staff_client.post(
        post_url, {"user": user.username, "operation": "DAILY_REWARD", "amount": "3"}
    )
    assert "omit amount" in str(fixed.context["form"].errors["amount"])

    missing = staff_client.post(post_url, {"user": user.username, "operation": "CREDIT_ADD"})
    assert "required" in str(missing.context["form"].errors["amount"])

    nobody = staff_client.post(
        post_url, {"user": "nobody-here", "operation": "CREDIT_ADD", "amount": "1"}
    )
    assert "No user" in str(nobody.context["form"].errors["user"])

    assert ledger.entry_model.objects.count() == count

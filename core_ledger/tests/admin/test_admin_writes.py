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

    # The changelist links the reversal on the reversed row only (the annotated id); the other
    # rows stay blank rather than carrying a red mark.
    page = staff_client.get(changelist)
    listed = page.context["cl"].result_list
    assert {e.pk: e.reversal_id for e in listed}[entry.pk] == reversal.pk
    assert all(e.reversal_id is None for e in listed if e.pk != entry.pk)
    html = page.content.decode()
    assert f'<a href="{url(ledger.entry_model, "change", reversal.pk)}">#{reversal.pk}</a>' in html
    assert "icon-no" not in html


def test_reverse_page_shows_signed_amounts_and_operation_labels(
    staff_client: Client, ledger: AnyLedger, user: Any
) -> None:
    credit = _credit(ledger, user, 10)
    page = staff_client.post(
        url(ledger.entry_model, "changelist"),
        {"action": "reverse_selected", "_selected_action": [credit.pk], "index": 0},
    )
    html = page.content.decode()
    assert '<td class="ledger-amount">+10</td>' in html
    label = str(ledger.operations(credit.operation).label)
    assert f"<td>{label}</td>" in html and f"<td>{credit.operation}</td>" not in html


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
    balance = balance_get(ledger=ledger, user_id=user.pk)
    assert too_much.context["current_balance"] == balance
    assert f"<strong>{balance}</strong>. Nothing was posted." in too_much.content.decode()

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

"""GET /api/events/: permission, paging with the cursor, filters, and bad input.

The feed only hands out events of transactions that have ended, so these tests commit their
writes (``transaction=True``): inside a test's own open transaction its events are not final.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from core_ledger.feed import Position
from core_ledger.ledger import registry
from core_ledger.models import Event
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post
from core_ledger.testing import api_token, make_user
from core_ledger.tests.events.util import wait_until_final

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def reader() -> APIClient:
    user = make_user()
    user.user_permissions.add(
        Permission.objects.get(codename="view_event", content_type__app_label="core_ledger")
    )
    return client_for(user)


def read_all(
    client: APIClient, query: str = "", page_size: int = 3
) -> tuple[list[dict[str, Any]], str]:
    wait_until_final()
    events: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"/api/events/?page_size={page_size}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next_cursor"}
        assert body["next_cursor"]
        events += body["results"]
        if cursor == body["next_cursor"]:
            assert body["results"] == []
            return events, cursor
        cursor = body["next_cursor"]


def test_pages_follow_the_cursor_and_the_last_page_resumes() -> None:
    client = reader()  # its own signup credits are events too
    users = [make_user() for _ in range(3)]
    alpha = registry.get("alpha")
    for u in users:
        entry_post(ledger=alpha, user_id=u.pk, operation=Op.CREDIT_ADD, amount=4)
    events, cursor = read_all(client)
    ids = [e["id"] for e in events]
    assert ids == list(Event.objects.order_by("xid", "id").values_list("id", flat=True))
    assert len(ids) == len(set(ids)) == Event.objects.count()
    assert all(set(e) == {"id", "type", "ledger", "created_at", "data"} for e in events)
    # Polling with the last cursor gives only what came after it.
    entry = entry_post(ledger=alpha, user_id=users[0].pk, operation=Op.CREDIT_ADD, amount=1).entry
    wait_until_final()
    body = client.get(f"/api/events/?cursor={cursor}").json()
    assert [(e["ledger"], e["data"]["id"]) for e in body["results"]] == [("alpha", entry.pk)]
    assert body["results"][0]["data"]["balance"] == {
        "balance": entry.balance_after,
        "available": entry.balance_after,
    }
    assert client.get(f"/api/events/?cursor={body['next_cursor']}").json()["results"] == []


def test_filters_by_ledger_and_type() -> None:
    client = reader()
    make_user()
    for label in registry.labels():
        events, _ = read_all(client, f"&ledger={label}", page_size=2)
        assert events and all(e["ledger"] == label for e in events)
        assert len(events) == Event.objects.filter(ledger=label).count()
    events, _ = read_all(client, "&type=entry.posted", page_size=50)
    assert len(events) == Event.objects.count()


def test_an_empty_feed_still_has_a_cursor() -> None:
    client = client_for(make_user(is_superuser=True))
    # The superuser's signup credits are events: page past them, then the feed is empty.
    events, cursor = read_all(client, page_size=500)
    body = client.get(f"/api/events/?cursor={cursor}").json()
    assert body == {"results": [], "next_cursor": cursor}
    assert Position.decode(cursor).id == events[-1]["id"]


def test_who_may_read_the_feed() -> None:
    assert APIClient().get("/api/events/").status_code == 401
    response = client_for(make_user()).get("/api/events/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    staff = make_user(staff=True, operator=True)  # is_staff and every ledger right: still no
    assert client_for(staff).get("/api/events/").status_code == 403
    assert reader().get("/api/events/").status_code == 200
    assert client_for(make_user(is_superuser=True)).get("/api/events/").status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=nonsense", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=" + Position(1, 2).encode() + "x", "cursor"),
        ("cursor=MDAxOjE", "cursor"),  # "001:1": not a cursor the feed makes
        ("cursor=LTE6MQ", "cursor"),  # "-1:1"
        ("cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk6MQ", "cursor"),  # beyond 64 bits
        ("cursor=MToyOjM", "cursor"),  # "1:2:3"
        ("cursor=MTox%3D", "cursor"),  # padded
        ("page_size=0", "page_size"),
        ("page_size=501", "page_size"),
        ("page_size=x", "page_size"),
        ("ledger=nope", "ledger"),
        ("ledger=", "ledger"),
        ("type=entry.deleted", "type"),
    ],
)
def test_bad_input_is_a_400_validation_error(query: str, field: str) -> None:
    response = client_for(make_user(is_superuser=True)).get(f"/api/events/?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]


def test_a_valid_cursor_round_trips() -> None:
    for position in (Position(), Position(5, 7), Position(2**63 - 1, 2**63 - 1)):
        assert Position.decode(position.encode()) == position

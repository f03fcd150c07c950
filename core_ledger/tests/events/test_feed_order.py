"""The feed never skips an event that committed late, and never hands one out twice.

Real threads, each with its own connection: a writer takes an event id and keeps its
transaction open while other writers take later ids and commit; a reader pages the feed all
along. A plain ``id > last`` reader, run beside it, skips the late event for good: that is the
failure the ``(xid, id)`` order and the ``xmin`` horizon exist to prevent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from core_ledger.ledger import registry
from core_ledger.models import Event
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post
from core_ledger.testing import api_token, make_user
from core_ledger.tests.events.util import wait_until_final

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0
DRAIN_WAIT = 330.0  # the reader waits for the feed (util.WAIT_SECONDS), then drains


class FeedReader(threading.Thread):
    """Pages GET /api/events/ with the cursor until told to stop, then drains once more."""

    def __init__(self, token: str) -> None:
        super().__init__(daemon=True)
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        self.seen: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def page(self, cursor: str) -> str:
        url = "/api/events/?page_size=2" + (f"&cursor={cursor}" if cursor else "")
        body = self.client.get(url).json()
        self.seen += [event["id"] for event in body["results"]]
        return str(body["next_cursor"])

    def run(self) -> None:
        cursor = ""
        try:
            while not self.stop.is_set():
                cursor = self.page(cursor)
                time.sleep(0.005)
            wait_until_final()  # a long transaction elsewhere on the server delays the feed
            while True:  # drain
                before = len(self.seen)
                cursor = self.page(cursor)
                if len(self.seen) == before:
                    break
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


class NaiveReader(threading.Thread):
    """What the feed must not be: ``id > last`` on committed rows."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0
        try:
            while True:
                stopping = self.stop.is_set()
                ids = list(
                    Event.objects.filter(id__gt=last).order_by("id").values_list("id", flat=True)
                )
                if ids:
                    self.seen += ids
                    last = ids[-1]
                if stopping:
                    break
                time.sleep(0.005)
        finally:
            connection.close()


def test_a_late_commit_is_handed_out_once_and_never_skipped() -> None:
    alpha = registry.get("alpha")
    superuser = make_user(is_superuser=True)
    slow_user = make_user()
    fast_users = [make_user() for _ in range(3)]
    reader = FeedReader(api_token(superuser))
    naive = NaiveReader()
    reader.start()
    naive.start()

    slow_wrote = threading.Event()
    slow_may_commit = threading.Event()
    slow_event: list[int] = []
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                entry = entry_post(
                    ledger=alpha, user_id=slow_user.pk, operation=Op.CREDIT_ADD, amount=1
                ).entry
                slow_event.append(Event.objects.get(ledger="alpha", object_id=entry.pk).id)
                slow_wrote.set()
                assert slow_may_commit.wait(WAIT)
                # More events from the same, still open transaction.
                entry_post(ledger=alpha, user_id=slow_user.pk, operation=Op.CREDIT_ADD, amount=2)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def fast_writer(user: Any) -> None:
        try:
            for n in range(5):
                entry_post(ledger=alpha, user_id=user.pk, operation=Op.CREDIT_ADD, amount=n + 1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    slow = threading.Thread(target=slow_writer, daemon=True)
    slow.start()
    assert slow_wrote.wait(WAIT)
    fast = [threading.Thread(target=fast_writer, args=(u,), daemon=True) for u in fast_users]
    for t in fast:
        t.start()
    for t in fast:
        t.join(WAIT)
    assert not errors, errors
    fast_ids = set(Event.objects.filter(id__gt=slow_event[0]).values_list("id", flat=True))
    assert len(fast_ids) == 15  # committed, with ids after the open transaction's event

    # The naive reader has moved past the open transaction's id (it may even have skipped
    # some of the fast writers' events already: they raced each other too)...
    deadline = time.monotonic() + WAIT
    while max(naive.seen, default=0) < max(fast_ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert max(naive.seen) == max(fast_ids)
    # ...while the feed held every later event back: they could still be preceded by one.
    time.sleep(0.2)
    assert not fast_ids & set(reader.seen)

    slow_may_commit.set()
    slow.join(WAIT)
    assert not errors, errors
    reader.stop.set()
    naive.stop.set()
    reader.join(DRAIN_WAIT)
    naive.join(WAIT)
    assert not reader.is_alive(), "the reader never caught up"
    assert reader.error is None, reader.error

    everything = list(Event.objects.order_by("xid", "id").values_list("id", flat=True))
    assert reader.seen == everything  # every event, exactly once, in feed order
    assert len(reader.seen) == len(set(reader.seen))
    assert slow_event[0] not in naive.seen  # the plain id cursor lost it for good

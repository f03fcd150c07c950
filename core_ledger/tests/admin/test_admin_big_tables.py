"""The admin lists on a ledger that grows for years (issue 17): a bounded number of queries
whatever the table size, no COUNT(*) over a whole table, and filters, searches and pages that an
index serves. The data is small; what is asserted is the SQL the pages send."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core_ledger.admin import LargeTablePaginator
from core_ledger.ledger import AnyLedger
from core_ledger.operations import SharedOperation as Op
from core_ledger.services import entry_post
from core_ledger.testing import make_user, set_balance


def url(model: type[Any], view: str = "changelist") -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}")


def _post_many(ledger: AnyLedger, users: list[Any], n: int, **extra: Any) -> list[Any]:
    """``n`` CREDIT_ADD entries spread over ``users``."""
    return [
        entry_post(
            ledger=ledger,
            user_id=users[i % len(users)].pk,
            operation=Op.CREDIT_ADD,
            amount=1 + i % 5,
            **extra,
        ).entry
        for i in range(n)
    ]


def _unbounded_counts(sqls: list[str], table: str) -> list[str]:
    """COUNT(*) statements on ``table`` that are not over a LIMITed subquery."""
    found = []
    for sql in sqls:
        if "COUNT(" not in sql.upper() or f'"{table}"' not in sql:
            continue
        if not re.search(r"\bLIMIT\s+\d+", sql, re.IGNORECASE):
            found.append(sql)
    return found


def _get(client: Client, path: str) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response, [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cap of 120 rows, so that small tables behave as big ones do past 10,000."""
    monkeypatch.setattr(LargeTablePaginator, "count_cap", 120)


def entry_pages(ledger: AnyLedger, user: Any, entry: Any) -> list[str]:
    base = url(ledger.entry_model)
    return [
        base,
        f"{base}?p=2",
        f"{base}?user__id__exact={user.pk}",
        f"{base}?operation__exact=CREDIT_ADD",
        f"{base}?created_at__gte=2000-01-01+00:00:00%2B00:00",
        f"{base}?q=%23{entry.pk}",
        f"{base}?q=key-7",
        f"{base}?q=promo",
        f"{base}?q={user.get_username()}",
        f"{base}?cursor={entry.pk}",
    ]


def test_entry_pages_cost_the_same_queries_at_any_size(
    superuser_client: Client, ledger: AnyLedger, small_cap: None
) -> None:
    """Every entries page sends the same number of queries with 330 entries and with 660 (each
    list more than a page at both sizes), and none counts the whole table (the paginator counts
    at most cap + 1 rows)."""
    users = [make_user() for _ in range(3)]
    table = ledger.entry_model._meta.db_table

    def measure() -> list[int]:
        entry = ledger.entry_model.objects.order_by("-id")[10]
        counts = []
        for path in entry_pages(ledger, users[0], entry):
            response, sqls = _get(superuser_client, path)
            assert response.status_code == 200, path
            assert not _unbounded_counts(sqls, table), path
            counts.append(len(sqls))
        return counts

    _post_many(ledger, users, 330, description="promo spring")
    entry_post(
        ledger=ledger,
        user_id=users[1].pk,
        operation=Op.CREDIT_ADD,
        amount=1,
        idempotency_key="key-7",
    )
    smaller = measure()
    _post_many(ledger, users, 330, description="promo summer")
    assert measure() == smaller


def test_no_count_of_the_whole_table_on_the_plain_list(
    superuser_client: Client, ledger: AnyLedger, small_cap: None
) -> None:
    users = [make_user() for _ in range(2)]
    _post_many(ledger, users, 130)
    response, sqls = _get(superuser_client, url(ledger.entry_model))
    table = ledger.entry_model._meta.db_table
    counts = [s for s in sqls if "COUNT(" in s.upper() and f'"{table}"' in s]
    assert counts, "the paginator's bounded count is expected"
    assert not _unbounded_counts(sqls, table)
    assert all("LIMIT 121" in s for s in counts)  # cap + 1
    html = response.content.decode()
    assert "about " in html  # past the cap, unfiltered: the planner's estimate, said as such
    cl = response.context["cl"]
    assert cl.paginator.bounded_count.kind == "estimate"
    assert cl.date_hierarchy is None
    assert len(cl.result_list) == 100


def test_a_filtered_list_past_the_cap_says_more_than(
    superuser_client: Client, ledger: AnyLedger, user: Any, small_cap: None
) -> None:
    _post_many(ledger, [user], 130)
    response = superuser_client.get(f"{url(ledger.entry_model)}?user__id__exact={user.pk}")
    assert "more than 120" in response.content.decode()
    assert response.context["cl"].paginator.bounded_count.kind == "more_than"


def test_searches_each_find_their_entries(
    superuser_client: Client, ledger: AnyLedger, user: Any, other_user: Any
) -> None:
    keyed = entry_post(
        ledger=ledger,
        user_id=other_user.pk,
        operation=Op.CREDIT_ADD,
        amount=3,
        idempotency_key="order-991",
    ).entry
    described = entry_post(
        ledger=ledger,
        user_id=other_user.pk,
        operation=Op.CREDIT_ADD,
        amount=4,
        description="Spring Bonus for referrals",
    ).entry
    set_balance(ledger=ledger, user=user, to=500)

    def found(term: str) -> set[int]:
        response = superuser_client.get(url(ledger.entry_model), {"q": term})
        assert response.status_code == 200
        return {e.pk for e in response.context["cl"].result_list}

    assert found(f"#{keyed.pk}") == {keyed.pk}
    assert found("order-991") == {keyed.pk}
    assert found("bonus") == {described.pk}  # case-insensitive, inside the text
    assert found("order-99") == set()  # keys match exactly, never by part
    user_entries = set(ledger.entry_model.objects.filter(user=user).values_list("pk", flat=True))
    assert found(user.get_username()) == user_entries
    assert found(user.get_username()[:-1]) >= user_entries  # the start of a username
    assert found(str(user.pk)) >= user_entries  # digits: the user id (or an entry id)
    assert found("%") == set() and found("_") == set()  # LIKE wildcards are text
    assert found("#99999999999999999999") == set()  # past bigint: nothing, not a 500


def test_description_search_is_served_by_the_trigram_index(ledger: AnyLedger, db: None) -> None:
    """The search's SQL and the index agree (ILIKE on the column, gin_trgm_ops): with
    sequential scans off the planner picks the index, as it does on a big table."""
    from core_ledger.selectors import entry_search

    qs = entry_search(ledger.entry_model.objects.all(), term="bonus").order_by()
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    opts = ledger.entry_model._meta
    assert f"{opts.app_label}_{opts.model_name}_desc" in plan


@pytest.mark.parametrize(
    "query",
    ["operation__exact=CREDIT_ADD", "created_at__gte=2000-01-01T00:00:00+00:00", "q=order-1"],
)
def test_filters_use_an_index(ledger: AnyLedger, query: str, db: None) -> None:
    """Each filter of the entries page has an index that serves it (sequential scans off)."""
    from core_ledger.selectors import entry_search

    qs: Any = ledger.entry_model.objects.all()
    name, _, value = query.partition("=")
    qs = entry_search(qs, term=value) if name == "q" else qs.filter(**{name: value})
    sql, params = qs.order_by("-id")[:100].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "Seq Scan" not in plan, plan


def test_keyset_cursor_pages_on_past_the_capped_page_numbers(
    superuser_client: Client, ledger: AnyLedger, small_cap: None
) -> None:
    users = [make_user() for _ in range(2)]
    _post_many(ledger, users, 230)
    first = superuser_client.get(url(ledger.entry_model))
    cl = first.context["cl"]
    ids = [e.pk for e in cl.result_list]
    assert ids == sorted(ids, reverse=True)
    assert cl.next_cursor_url == f"?cursor={ids[-1]}"
    assert 'class="ledger-next"' in first.content.decode()

    second = superuser_client.get(url(ledger.entry_model) + cl.next_cursor_url)
    next_ids = [e.pk for e in second.context["cl"].result_list]
    assert len(next_ids) == 100 and max(next_ids) < min(ids)
    assert 'class="ledger-first"' in second.content.decode()

    # Filters are kept with the cursor.
    user = users[0]
    filtered = superuser_client.get(
        f"{url(ledger.entry_model)}?user__id__exact={user.pk}&cursor={ids[50]}"
    )
    rows = list(filtered.context["cl"].result_list)
    assert rows and all(e.user_id == user.pk and e.pk < ids[50] for e in rows)


def test_page_numbers_stop_at_max_pages(
    superuser_client: Client, ledger: AnyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LargeTablePaginator, "max_pages", 2)
    _post_many(ledger, [make_user()], 320)
    assert superuser_client.get(url(ledger.entry_model) + "?p=2").status_code == 200
    past = superuser_client.get(url(ledger.entry_model) + "?p=3")
    assert past.status_code == 302 and "e=1" in past["Location"]  # Django's "bad lookup" page


@pytest.mark.parametrize("cursor", ["abc", "-1", "99999999999999999999"])
def test_a_bad_cursor_is_refused_not_a_500(
    superuser_client: Client, ledger: AnyLedger, cursor: str
) -> None:
    response = superuser_client.get(url(ledger.entry_model), {"cursor": cursor})
    assert response.status_code == 302 and "e=1" in response["Location"]


def test_balances_list_is_bounded_and_searches_one_user(
    superuser_client: Client, ledger: AnyLedger, small_cap: None
) -> None:
    users = [make_user() for _ in range(130)]  # a balance row each (the signup credit)
    for u in users[:3]:
        set_balance(ledger=ledger, user=u, to=70)
    table = ledger.balance_model._meta.db_table
    superuser_client.get(url(ledger.balance_model))  # the totals: once a minute (see below)
    response, sqls = _get(superuser_client, url(ledger.balance_model))
    assert response.status_code == 200
    assert not _unbounded_counts(sqls, table)
    ids = [b.user_id for b in response.context["cl"].result_list]
    assert ids == sorted(ids)  # the primary key's order: no sort of the table
    target = users[1]
    found = superuser_client.get(url(ledger.balance_model), {"q": target.get_username()})
    assert [b.user_id for b in found.context["cl"].result_list] == [target.pk]
    by_id = superuser_client.get(url(ledger.balance_model), {"q": str(target.pk)})
    assert [b.user_id for b in by_id.context["cl"].result_list] == [target.pk]
    prefix = superuser_client.get(url(ledger.balance_model), {"q": target.get_username()[:-1]})
    assert target.pk in {b.user_id for b in prefix.context["cl"].result_list}
    nobody = superuser_client.get(url(ledger.balance_model), {"q": "no-such-user"})
    assert list(nobody.context["cl"].result_list) == []


def test_balances_totals_come_from_the_cache_within_a_minute(
    superuser_client: Client, ledger: AnyLedger, user: Any
) -> None:
    from core_ledger.selectors import ledger_totals_forget

    ledger_totals_forget(ledger=ledger)
    table = ledger.balance_model._meta.db_table
    _, first = _get(superuser_client, url(ledger.balance_model))
    _, second = _get(superuser_client, url(ledger.balance_model))
    aggregate = [s for s in first if "SUM(" in s.upper() and f'"{table}"' in s]
    assert len(aggregate) == 1  # computed once...
    assert not [s for s in second if "SUM(" in s.upper() and f'"{table}"' in s]  # ...then cached


def test_lots_list_is_bounded(
    superuser_client: Client, ledger: AnyLedger, user: Any, small_cap: None
) -> None:
    import datetime as dt

    from django.utils import timezone

    for i in range(130):
        entry_post(
            ledger=ledger,
            user_id=user.pk,
            operation=Op.CREDIT_ADD,
            amount=1,
            expires_at=timezone.now() + dt.timedelta(days=1 + i),
        )
    table = ledger.lot_model._meta.db_table
    response, sqls = _get(superuser_client, url(ledger.lot_model))
    assert response.status_code == 200
    assert not _unbounded_counts(sqls, table)
    found = superuser_client.get(url(ledger.lot_model), {"q": user.get_username()})
    assert {lot.user_id for lot in found.context["cl"].result_list} == {user.pk}


def test_holds_events_and_deliveries_lists_are_bounded(
    superuser_client: Client, ledger: AnyLedger, user: Any, staff: Any, small_cap: None
) -> None:
    """The holds, the events and the delivery log grow like the entries: no count of the whole
    table, no date hierarchy, and the same number of queries at 125 holds as at 250 (both past
    the paginator's cap, 120 here)."""
    from core_ledger.models import Event, WebhookDelivery
    from core_ledger.services.holds import hold_place

    set_balance(ledger=ledger, user=user, to=10_000)

    def place(n: int) -> None:
        for _ in range(n):
            hold_place(
                ledger=ledger, user_id=user.pk, operation=Op.CREDIT_SPEND, amount=1, actor=staff
            )

    pages = (ledger.hold_model, Event, WebhookDelivery)
    place(125)
    small = {model: _get(superuser_client, url(model)) for model in pages}
    place(125)
    for model in pages:
        response, sqls = _get(superuser_client, url(model))
        assert response.status_code == 200
        assert not _unbounded_counts(sqls, model._meta.db_table)
        assert response.context["cl"].date_hierarchy is None
        assert len(sqls) == len(small[model][1]), (model, sqls)
    found = superuser_client.get(url(ledger.hold_model), {"q": user.get_username()})
    assert {hold.user_id for hold in found.context["cl"].result_list} == {user.pk}

"""The load of the process-concurrency test and of ``bench/soak.py``: one OS process, its own
database connection (or HTTP client), random credits, spends, holds (captured, released or left
to expire), reversals and retried idempotent requests on a few hot users for a bounded time, recording every acknowledged and refused write.

:func:`run_worker` is the child's entry point (spawned, so it sets Django up itself, against the
database it is told); :func:`verify` is the parent's check of what the children recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SHARED_KEYS_PER_USER = 8


@dataclass
class Plan:
    """What one child does; picklable."""

    worker: int
    seed: int
    seconds: float
    ledgers: list[str]
    users: list[int]  # the hot users
    db_name: str = ""  # service transport: the database to connect to
    base_url: str = ""  # http transport: the server
    tokens: dict[int, str] = field(default_factory=dict)  # user id -> token (http)
    staff_token: str = ""
    max_operations: int = 1_000_000
    # Keep going past ``seconds`` until this many operations ran (a slow machine still gets a
    # meaningful run), but never past three times ``seconds``.
    min_operations: int = 0


@dataclass
class Outcome:
    ok: bool
    entry: dict[str, Any] | None = None
    replayed: bool = False
    code: str = ""


class ServiceTransport:
    """Calls ``core_ledger.services`` in this process, as the system (actor None)."""

    def __init__(self, plan: Plan) -> None:
        from core_ledger.ledger import registry

        self.registry = registry

    def post(
        self,
        ledger: str,
        user: int,
        op: str,
        amount: int | None,
        key: str | None,
        expires_at: str | None = None,
    ) -> Outcome:
        from django.utils.dateparse import parse_datetime

        from core_ledger.exceptions import LedgerError
        from core_ledger.services import entry_post

        try:
            result = entry_post(
                ledger=self.registry.get(ledger),
                user_id=user,
                operation=op,
                amount=amount,
                idempotency_key=key,
                expires_at=parse_datetime(expires_at) if expires_at else None,
            )
        except LedgerError as exc:
            return Outcome(False, code=exc.code)
        e = result.entry
        return Outcome(True, _entry_dict(e), result.replayed)

    def reverse(self, ledger: str, entry_id: int) -> Outcome:
        from core_ledger.exceptions import LedgerError
        from core_ledger.services import entry_reverse

        try:
            e = entry_reverse(ledger=self.registry.get(ledger), entry_id=entry_id, reason="soak")
        except LedgerError as exc:
            return Outcome(False, code=exc.code)
        return Outcome(True, _entry_dict(e))

    def expire(self, ledger: str) -> int:
        """Run the expiry sweeps (what ``ledger_expire`` does) beside the other processes."""
        from core_ledger.services.holds import holds_expire
        from core_ledger.services.lots import lots_expire

        led = self.registry.get(ledger)
        return holds_expire(ledger=led).holds + lots_expire(ledger=led).lots

    def hold(self, ledger: str, user: int, amount: int, expires_in: int) -> Outcome:
        from core_ledger.exceptions import LedgerError
        from core_ledger.services import hold_place

        led = self.registry.get(ledger)
        try:
            result = hold_place(
                ledger=led,
                user_id=user,
                operation=led.operation("CREDIT_SPEND"),
                amount=amount,
                expires_in=expires_in,
            )
        except LedgerError as exc:
            return Outcome(False, code=exc.code)
        return Outcome(True, {"id": result.hold.pk, "user": user, "amount": amount})

    def resolve(self, ledger: str, user: int, hold_id: int, capture: int | None) -> Outcome:
        """Capture ``capture`` credits of the hold (None: release it); the capture's entry."""
        from core_ledger.exceptions import LedgerError
        from core_ledger.services import hold_capture, hold_release

        led = self.registry.get(ledger)
        try:
            if capture is None:
                hold_release(ledger=led, hold_id=hold_id)
                return Outcome(True)
            hold = hold_capture(ledger=led, hold_id=hold_id, amount=capture).hold
        except LedgerError as exc:
            return Outcome(False, code=exc.code)
        return Outcome(True, _capture_dict(hold.entry_id, user, capture))

    def recent_entries(self, ledger: str, user: int) -> list[int]:
        model = self.registry.get(ledger).entry_model
        return list(
            model.objects.filter(user_id=user).order_by("-id").values_list("id", flat=True)[:20]
        )

    def close(self) -> None:
        from django.db import connection

        connection.close()


class HttpTransport:
    """Calls the REST API: spends with the user's own token, credits and reversals as staff."""

    def __init__(self, plan: Plan) -> None:
        import httpx

        self.plan = plan
        self.client = httpx.Client(base_url=plan.base_url, timeout=30.0)

    def _headers(self, token: str, key: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Token {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def _outcome(self, response: Any) -> Outcome:
        body = response.json()
        if response.status_code == 201:
            return Outcome(True, body, response.headers.get("Idempotent-Replayed") == "true")
        if response.status_code >= 500 and response.status_code != 503:
            raise AssertionError(f"{response.status_code}: {response.text[:300]}")
        return Outcome(False, code=body["error"]["code"])

    def post(
        self,
        ledger: str,
        user: int,
        op: str,
        amount: int | None,
        key: str | None,
        expires_at: str | None = None,
    ) -> Outcome:
        body: dict[str, Any]
        if op == "DAILY_REWARD":  # a fixed amount: the user claims it, sending none
            token, body = self.plan.tokens[user], {"operation": op}
        elif op == "CREDIT_SPEND":
            token, body = self.plan.tokens[user], {"operation": op, "amount": amount}
        else:
            token = self.plan.staff_token
            body = {"operation": op, "amount": amount, "user": user}
            if expires_at is not None:
                body["expires_at"] = expires_at
        response = self.client.post(
            f"/api/{ledger}/entries/", json=body, headers=self._headers(token, key)
        )
        return self._outcome(response)

    def expire(self, ledger: str) -> int:
        """Over HTTP the sweep is the ledger's own, before each user's next write: nothing here."""
        return 0

    def hold(self, ledger: str, user: int, amount: int, expires_in: int) -> Outcome:
        response = self.client.post(
            f"/api/{ledger}/holds/",
            json={"operation": "CREDIT_SPEND", "amount": amount, "expires_in": expires_in},
            headers=self._headers(self.plan.tokens[user], None),
        )
        out = self._outcome(response)
        if out.ok and out.entry is not None:  # the hold, not an entry
            out.entry = {"id": out.entry["id"], "user": user, "amount": amount}
        return out

    def resolve(self, ledger: str, user: int, hold_id: int, capture: int | None) -> Outcome:
        action = "release" if capture is None else "capture"
        response = self.client.post(
            f"/api/{ledger}/holds/{hold_id}/{action}/",
            json={} if capture is None else {"amount": capture},
            headers=self._headers(self.plan.tokens[user], None),
        )
        body = response.json()
        if response.status_code == 200:
            if capture is None:
                return Outcome(True)
            return Outcome(True, _capture_dict(body["entry"], user, capture))
        if response.status_code >= 500 and response.status_code != 503:
            raise AssertionError(f"{response.status_code}: {response.text[:300]}")
        return Outcome(False, code=body["error"]["code"])

    def reverse(self, ledger: str, entry_id: int) -> Outcome:
        response = self.client.post(
            f"/api/{ledger}/entries/{entry_id}/reverse/",
            json={"reason": "soak"},
            headers=self._headers(self.plan.staff_token, None),
        )
        return self._outcome(response)

    def recent_entries(self, ledger: str, user: int) -> list[int]:
        response = self.client.get(
            f"/api/{ledger}/entries/",
            params={"user": user, "page_size": 20},
            headers=self._headers(self.plan.staff_token, None),
        )
        assert response.status_code == 200, response.text[:300]
        return [e["id"] for e in response.json()["results"]]

    def close(self) -> None:
        self.client.close()


def _entry_dict(e: Any) -> dict[str, Any]:
    return {
        "id": e.pk,
        "user": e.user_id,
        "amount": e.amount,
        "idempotency_key": e.idempotency_key,
        "reverses": e.reverses_id,
    }


def _capture_dict(entry_id: Any, user: int, captured: int) -> dict[str, Any]:
    """The debit entry a capture posted, as acknowledged."""
    return {
        "id": entry_id,
        "user": user,
        "amount": -captured,
        "idempotency_key": None,
        "reverses": None,
    }


def _setup_django(db_name: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ledger_project.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = db_name
    from django.db import connections

    connections["default"].settings_dict["NAME"] = db_name


def run_worker(plan: Plan, transport_name: str, start: Any, results: Any) -> None:
    """Child entry point: wait at ``start`` (a barrier), run the plan, put a report on ``results``."""
    report: dict[str, Any] = {"worker": plan.worker, "error": None}
    try:
        if transport_name == "service":
            _setup_django(plan.db_name)
            transport: Any = ServiceTransport(plan)
        else:
            transport = HttpTransport(plan)
        start.wait()
        try:
            report.update(_load(plan, transport))
        finally:
            transport.close()
    except BaseException:
        report["error"] = traceback.format_exc()
    results.put(report)


def _load(plan: Plan, transport: Any) -> dict[str, Any]:
    rng = random.Random(plan.seed)
    acked: list[dict[str, Any]] = []  # every acknowledged write (replays included)
    attempted_keys: set[tuple[str, int, str]] = set()
    acked_keys: dict[tuple[str, int, str], int] = {}
    # keyed requests, for exact retries: (ledger, user, operation, amount, key, expires_at)
    history: list[tuple[str, int, str, int, str, str | None]] = []
    refusals: Counter[str] = Counter()
    problems: list[str] = []
    operations = 0
    started = time.monotonic()
    deadline, hard_deadline = started + plan.seconds, started + 3 * plan.seconds
    serial = 0
    holds_placed = [0]

    def keyed_post(
        ledger: str, user: int, op: str, amount: int, key: str, expires_at: str | None, kind: str
    ) -> None:
        nonlocal operations
        operations += 1
        out = transport.post(ledger, user, op, amount, key, expires_at)
        if not kind.startswith("shared"):
            attempted_keys.add((ledger, user, key))
        if out.ok:
            e = out.entry
            if e["idempotency_key"] != key or e["user"] != user:
                problems.append(f"ack for key {key} returned {e}")
            previous = acked_keys.get((ledger, user, key))
            if previous is not None and previous != e["id"]:
                problems.append(f"key {key}: entry {e['id']} after entry {previous}")
            if out.replayed and previous is None and not kind.startswith("shared"):
                problems.append(f"key {key} replayed entry {e['id']} never acknowledged")
            acked_keys[(ledger, user, key)] = e["id"]
            acked.append({**e, "ledger": ledger, "replayed": out.replayed, "kind": kind})
        else:
            refusals[out.code] += 1

    while operations < plan.max_operations:
        now = time.monotonic()
        if now >= hard_deadline or (now >= deadline and operations >= plan.min_operations):
            break
        ledger = rng.choice(plan.ledgers)
        user = rng.choice(plan.users)
        roll = rng.random()
        serial += 1
        if roll < 0.25:
            key = f"w{plan.worker}-{serial}"
            amount = rng.randint(1, 20)
            # A third of the credits expire within a few seconds: spends draw from them, the
            # ledger writes their EXPIRY entries, and reversals give credits back to them.
            expires_at = None
            if rng.random() < 0.35:
                lifetime = dt.timedelta(seconds=rng.uniform(0.3, 3.0))
                expires_at = (dt.datetime.now(dt.timezone.utc) + lifetime).isoformat()
            history.append((ledger, user, "CREDIT_ADD", amount, key, expires_at))
            keyed_post(ledger, user, "CREDIT_ADD", amount, key, expires_at, "credit")
        elif roll < 0.28:
            operations += 1
            transport.expire(ledger)
        elif roll < 0.52:
            key = f"w{plan.worker}-{serial}"
            amount = rng.randint(1, 60)
            history.append((ledger, user, "CREDIT_SPEND", amount, key, None))
            keyed_post(ledger, user, "CREDIT_SPEND", amount, key, None, "spend")
        elif roll < 0.60:
            # A hold: captured (whole or in part), released, or left to expire (1-2 s).
            operations += 1
            amount = rng.randint(1, 40)
            placed = transport.hold(ledger, user, amount, rng.choice([1, 2, 60]))
            if not placed.ok:
                refusals[placed.code] += 1
                continue
            holds_placed[0] += 1
            fate = rng.random()
            if fate < 0.2:
                continue  # left to expire (or to the sweeps)
            operations += 1
            capture = None if fate < 0.45 else rng.randint(1, amount)
            out = transport.resolve(ledger, user, placed.entry["id"], capture)
            if not out.ok:
                refusals[out.code] += 1
            elif out.entry is not None:
                acked.append({**out.entry, "ledger": ledger, "replayed": False, "kind": "capture"})
        elif roll < 0.70 and history:
            keyed_post(*rng.choice(history), kind="retry")
        elif roll < 0.85:
            # One key, one request, shared by every process: exactly one entry must result.
            k = rng.randrange(SHARED_KEYS_PER_USER)
            if rng.random() < 0.5:
                keyed_post(ledger, user, "CREDIT_ADD", k + 1, f"shared-{k}", None, "shared")
            else:
                # One key, a different amount per process: one wins, the others get 422.
                k %= 2  # few such keys, so processes do collide on them
                amount = k + 1 + plan.worker
                keyed_post(ledger, user, "CREDIT_ADD", amount, f"shared-c{k}", None, "shared")
        elif roll < 0.90:
            # Every process claims the daily reward now and then: one claim per user per day.
            operations += 1
            out = transport.post(ledger, user, "DAILY_REWARD", None, None)
            if out.ok:
                acked.append({**out.entry, "ledger": ledger, "replayed": False, "kind": "daily"})
            else:
                refusals[out.code] += 1
        else:
            candidates = transport.recent_entries(ledger, user)
            operations += 1
            if not candidates:
                continue
            out = transport.reverse(ledger, rng.choice(candidates))
            if out.ok:
                acked.append({**out.entry, "ledger": ledger, "replayed": False, "kind": "reverse"})
            else:
                refusals[out.code] += 1

    never_acked = sorted(k for k in attempted_keys if k not in acked_keys)
    return {
        "operations": operations,
        "acked": acked,
        "refused_keys": never_acked,
        "refusals": dict(refusals),
        "problems": problems,
        "holds": holds_placed[0],
    }


def run_processes(
    *, plans: list[Plan], transport_name: str, timeout: float
) -> list[dict[str, Any]]:
    """Spawn one process per plan, release them together, collect their reports."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(plans), timeout=max(60.0, timeout))
    results = ctx.Queue()
    processes = [
        ctx.Process(target=run_worker, args=(plan, transport_name, start, results), daemon=True)
        for plan in plans
    ]
    for p in processes:
        p.start()
    reports = []
    try:
        for _ in processes:
            reports.append(results.get(timeout=timeout + 90))
    finally:
        for p in processes:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    return reports


def verify(
    *, reports: list[dict[str, Any]], users: list[int], baseline: dict[str, int]
) -> dict[str, Any]:
    """Check, against the database, everything the children acknowledged or were refused.

    ``baseline``: each ledger's highest entry id before the run. Raises AssertionError.
    Returns the figures.
    """
    from core_ledger.ledger import registry
    from core_ledger.selectors import ledger_check

    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, "a worker crashed:\n" + "\n".join(errors)
    problems = [p for r in reports for p in r["problems"]]
    assert not problems, problems
    figures: dict[str, Any] = {
        "processes": len(reports),
        "operations": sum(r["operations"] for r in reports),
        "acknowledged": 0,
        "replays": 0,
        "refusals": Counter(),
        "holds": sum(r.get("holds", 0) for r in reports),
        "captures": 0,
    }
    for r in reports:
        figures["refusals"].update(r["refusals"])
    for ledger in registry:
        label = ledger.label
        acked = [a for r in reports for a in r["acked"] if a["ledger"] == label]
        figures["acknowledged"] += len(acked)
        captures = {a["id"] for a in acked if a["kind"] == "capture"}
        figures["captures"] += len(captures)
        # Each acknowledged capture is a debit entry naming its hold, and only those name one.
        named = set(
            ledger.entry_model.objects.filter(
                user_id__in=users, pk__gt=baseline[label], hold__isnull=False
            ).values_list("id", flat=True)
        )
        assert named == captures, f"[{label}] captures {sorted(captures)} vs {sorted(named)}"
        figures["replays"] += sum(1 for a in acked if a["replayed"])
        by_id = {a["id"]: a for a in acked}
        stored = {
            e["id"]: e
            for e in ledger.entry_model.objects.filter(pk__in=list(by_id)).values(
                "id", "user_id", "amount", "idempotency_key", "reverses_id"
            )
        }
        # Every acknowledged write is in the database, exactly as acknowledged.
        missing = sorted(set(by_id) - set(stored))
        assert not missing, f"[{label}] acknowledged entries missing: {missing[:20]}"
        for entry_id, a in by_id.items():
            s = stored[entry_id]
            assert (s["user_id"], s["amount"], s["idempotency_key"], s["reverses_id"]) == (
                a["user"],
                a["amount"],
                a["idempotency_key"],
                a["reverses"],
            ), (a, s)
        # Nothing was written that nobody acknowledged, but for the EXPIRY entries the ledger
        # writes itself (each checked against its lot by ledger_check below).
        written = ledger.entry_model.objects.filter(user_id__in=users, pk__gt=baseline[label])
        figures.setdefault("expiries", 0)
        figures["expiries"] += written.filter(operation="EXPIRY").count()
        new = set(written.exclude(operation="EXPIRY").values_list("id", flat=True))
        unacknowledged = sorted(new - set(by_id))
        assert not unacknowledged, f"[{label}] entries nobody acknowledged: {unacknowledged[:20]}"
        # Shared keys: one entry per (user, key), whoever sent it, however often.
        shared = Counter(
            ledger.entry_model.objects.filter(
                user_id__in=users, idempotency_key__startswith="shared-"
            ).values_list("user_id", "idempotency_key")
        )
        assert all(n == 1 for n in shared.values()), shared
        shared_ids: dict[tuple[int, str], set[int]] = {}
        for a in acked:
            if a["kind"] == "shared":
                shared_ids.setdefault((a["user"], a["idempotency_key"]), set()).add(a["id"])
        assert all(len(ids) == 1 for ids in shared_ids.values()), shared_ids
        # Daily claims raced by every process: one per user per day, and each acknowledged.
        claims = Counter(
            ledger.entry_model.objects.filter(
                user_id__in=users, operation="DAILY_REWARD"
            ).values_list("user_id", "day")
        )
        assert all(n == 1 for n in claims.values()), claims
        daily_acks = sum(1 for a in acked if a["kind"] == "daily")
        assert daily_acks == sum(claims.values()), (daily_acks, claims)
        # A key that was only ever refused left nothing.
        refused = [
            (user, key) for r in reports for (lab, user, key) in r["refused_keys"] if lab == label
        ]
        leaked = ledger.entry_model.objects.filter(
            user_id__in=users, idempotency_key__in=[k for _, k in refused]
        ).values_list("user_id", "idempotency_key")
        assert not set(leaked) & set(refused), f"[{label}] refused keys were written"
        figures.setdefault("refused keys checked", 0)
        figures["refused keys checked"] += len(refused)
        problems_found = ledger_check(ledger=ledger, user_ids=users)
        assert not problems_found, [str(p) for p in problems_found]
    figures["refusals"] = dict(figures["refusals"])
    return figures

"""Model-based test: random sequences of posts, claims, reversals, idempotent retries and holds
(placed, captured, released) against the service layer, each decision and balance compared with a plain-Python model of the rules.

The model below is written from DESIGN.md, not from the service's code: who may post what, which
operations are fixed, once or daily, the sign of each operation, never-negative balances, a key
per (ledger, account holder) whose replay returns the original entry and whose reuse with any
other parameter is refused, reversals once per entry and never of a reversal; holds that reserve credits every debit must
leave alone, resolved once, by their placer or a service. After every step
the stored balances must equal the model's and ``ledger_check`` must find nothing.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from core_ledger.exceptions import LedgerError
from core_ledger.ledger import registry
from core_ledger.selectors import ledger_check
from core_ledger.services import (
    MAX_AMOUNT,
    entry_post,
    entry_reverse,
    hold_capture,
    hold_place,
    hold_release,
)
from core_ledger.tests.reliability.helpers import make_operator

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# --- the rules, written out independently of core_ledger.ledger ---------------------------------
# operation -> (sign, posted_by, frequency, fixed)
SHARED_SPEC: dict[str, tuple[int, str, str, bool]] = {
    "DAILY_REWARD": (+1, "user", "daily", True),
    "SIGNUP_CREDIT": (+1, "system", "once", True),
    "CREDIT_SPEND": (-1, "user", "any", False),
    "CREDIT_ADD": (+1, "staff", "any", False),
}
APP_SPEC: dict[str, dict[str, tuple[int, str, str, bool]]] = {
    "alpha": {
        "GAME_WIN": (+1, "staff", "any", False),
        "GAME_ENTRY_FEE": (-1, "user", "any", False),
    },
    "beta": {
        "REFERRAL_BONUS": (+1, "staff", "any", False),
        "PURCHASE": (-1, "user", "any", False),
    },
}
LEDGERS = sorted(APP_SPEC)
N_USERS = 3

OPERATIONS = [
    *sorted({*SHARED_SPEC, *itertools.chain.from_iterable(APP_SPEC.values())}),
    "REVERSAL",
    "NO_SUCH_OPERATION",
]
AMOUNTS = st.one_of(
    st.none(),
    st.integers(1, 150),
    st.sampled_from([0, -1, -50, MAX_AMOUNT, MAX_AMOUNT + 1, 2**63, True, 1.5, "10"]),
)
KEYS = st.one_of(
    st.none(),
    st.sampled_from(["k1", "k2", "k3"]),  # a small pool: reuse happens by itself
    st.text(alphabet="abcdef0123456789", min_size=8, max_size=8).map(lambda s: "fresh-" + s),
    st.sampled_from(["", "x" * 256, "clé", "a\nb"]),  # invalid keys
)
DESCRIPTIONS = st.sampled_from(["", "", "note", "x" * 501, "nul\x00here"])
METADATA = st.sampled_from(
    [
        None,
        {"order": "42"},
        {"k" * 65: "v"},
        {"long": "v" * 501},
        {f"k{i}": i for i in range(21)},
        ["not", "an", "object"],
    ]
)
ACTORS = st.sampled_from(["system", "self", "other", "staff"])

STEPS = {
    "operations": 0,
    "accepted": 0,
    "replayed": 0,
    "refused": 0,
    "examples": 0,
    "holds": 0,
    "captures": 0,
}
_names = itertools.count()


@dataclass
class ModelEntry:
    ledger: str
    user: int
    operation: str
    amount: int
    reversed: bool = False


@dataclass
class ModelHold:
    ledger: str
    user: int
    operation: str
    amount: int
    placed_by: int | None
    status: str = "pending"


@dataclass
class Outcome:
    kind: str  # "ok" | "replay" | "refuse"
    code: str = ""
    amount: int = 0  # signed, for "ok"
    entry_id: int | None = None  # for "replay"


@dataclass
class LedgerModel:
    """The rules in plain Python: what the ledger must decide, and the balances it must hold."""

    fixed: dict[str, dict[str, int]]
    balances: dict[tuple[str, int], int] = field(default_factory=dict)
    entries: dict[tuple[str, int], ModelEntry] = field(default_factory=dict)
    keys: dict[tuple[str, int, str], tuple[tuple[Any, ...], int]] = field(default_factory=dict)
    claimed_today: set[tuple[str, int]] = field(default_factory=set)
    signed_up: set[tuple[str, int]] = field(default_factory=set)
    held: dict[tuple[str, int], int] = field(default_factory=dict)
    holds: dict[tuple[str, int], ModelHold] = field(default_factory=dict)

    def available(self, ledger: str, user: int) -> int:
        return self.balances[(ledger, user)] - self.held.get((ledger, user), 0)

    def place_hold(
        self, *, ledger: str, user: int, operation: str, amount: Any, actor: str
    ) -> Outcome:
        if operation in ("REVERSAL", "EXPIRY"):
            return Outcome("refuse", "operation_not_allowed")
        spec = self.spec(ledger, operation)
        if spec is None:
            return Outcome("refuse", "validation_error")
        sign, posted_by, _, _ = spec
        if actor != "system":
            if posted_by == "system":
                return Outcome("refuse", "operation_not_allowed")
            if actor != "staff" and (posted_by == "staff" or actor == "other"):
                return Outcome("refuse", "operation_not_allowed")
        if sign > 0:  # only debits can be held
            return Outcome("refuse", "validation_error")
        if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
            return Outcome("refuse", "validation_error")
        if self.available(ledger, user) < amount:
            return Outcome("refuse", "insufficient_credits")
        return Outcome("ok", amount=amount)

    def resolve_hold(
        self,
        *,
        ledger: str,
        hold_id: int,
        capture: bool,
        amount: Any,
        actor_id: int | None,
        staff: bool,
    ) -> Outcome:
        hold = self.holds[(ledger, hold_id)]
        if capture and amount is not None and amount < 1:  # the shape, before anything else
            return Outcome("refuse", "validation_error")
        if not (actor_id is None or staff or actor_id == hold.placed_by):
            return Outcome("refuse", "operation_not_allowed")
        if capture and amount is not None and amount > hold.amount:
            return Outcome("refuse", "validation_error")
        if hold.status != "pending":
            return Outcome("refuse", "hold_not_pending")
        return Outcome("ok", amount=(hold.amount if amount is None else amount) if capture else 0)

    def spec(self, ledger: str, operation: str) -> tuple[int, str, str, bool] | None:
        return SHARED_SPEC.get(operation) or APP_SPEC[ledger].get(operation)

    def post(
        self,
        *,
        ledger: str,
        user: int,
        operation: str,
        amount: Any,
        actor: str,
        actor_id: int | None,
        key: Any,
        description: str,
        metadata: Any,
    ) -> Outcome:
        if operation == "REVERSAL":
            return Outcome("refuse", "operation_not_allowed")
        spec = self.spec(ledger, operation)
        if spec is None:
            return Outcome("refuse", "validation_error")
        sign, posted_by, frequency, fixed = spec
        # Who may post: the system anything but reversals; never a "system" operation by a
        # person; staff anything else for anyone; a user only "user" operations, own account.
        if actor != "system":
            if posted_by == "system":
                return Outcome("refuse", "operation_not_allowed")
            if actor != "staff" and (posted_by == "staff" or actor == "other"):
                return Outcome("refuse", "operation_not_allowed")
        if fixed:
            if amount is not None:
                return Outcome("refuse", "validation_error")
            amount = self.fixed[ledger][operation]
        if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
            return Outcome("refuse", "validation_error")
        if len(description) > 500 or "\x00" in description:
            return Outcome("refuse", "validation_error")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 20
            or any(len(k) > 64 for k in metadata)
            or any(isinstance(v, str) and len(v) > 500 for v in metadata.values())
        ):
            return Outcome("refuse", "validation_error")
        if key is not None and (
            not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable()
        ):
            return Outcome("refuse", "validation_error")
        signed = sign * amount
        fingerprint = (actor_id, operation, signed, description, json.dumps(metadata or {}))
        if key is not None and (ledger, user, key) in self.keys:
            stored, entry_id = self.keys[(ledger, user, key)]
            if stored != fingerprint:
                return Outcome("refuse", "idempotency_key_reused")
            return Outcome("replay", entry_id=entry_id)
        if signed < 0 and self.available(ledger, user) + signed < 0:
            return Outcome("refuse", "insufficient_credits")
        if frequency == "daily" and (ledger, user) in self.claimed_today:
            return Outcome("refuse", "already_claimed")
        if frequency == "once" and (ledger, user) in self.signed_up:
            return Outcome("refuse", "already_claimed")
        return Outcome("ok", amount=signed)

    def apply_post(
        self, *, ledger: str, user: int, operation: str, signed: int, key: Any, fp: Any, eid: int
    ) -> None:
        self.balances[(ledger, user)] += signed
        self.entries[(ledger, eid)] = ModelEntry(ledger, user, operation, signed)
        if key is not None:
            self.keys[(ledger, user, key)] = (fp, eid)
        if operation == "DAILY_REWARD":
            self.claimed_today.add((ledger, user))

    def reverse(self, *, ledger: str, entry_id: int, actor: str, reason: str) -> Outcome:
        if actor not in ("system", "staff"):
            return Outcome("refuse", "operation_not_allowed")
        if not reason.strip() or len(reason) > 500:
            return Outcome("refuse", "validation_error")
        original = self.entries.get((ledger, entry_id))
        if original is None:
            return Outcome("refuse", "not_found")
        if original.operation == "REVERSAL":
            return Outcome("refuse", "cannot_reverse_reversal")
        if original.reversed:
            return Outcome("refuse", "already_reversed")
        if self.available(ledger, original.user) - original.amount < 0:
            return Outcome("refuse", "insufficient_credits")
        return Outcome("ok", amount=-original.amount)


class LedgerMachine(RuleBasedStateMachine):
    """Drives the service layer and the model side by side; fresh users for every example."""

    def __init__(self) -> None:
        super().__init__()
        self.model: LedgerModel
        self.users: list[Any] = []
        self.staff: Any = None
        self.history: list[dict[str, Any]] = []  # keyed post requests, for exact retries

    @initialize()
    def create_users(self) -> None:
        STEPS["examples"] += 1
        user_model = get_user_model()
        # objects.create, not create_user: no password hashing, and the signal still grants the
        # signup credits, exactly as for a real sign-up.
        self.users = [
            user_model.objects.create(username=f"model-{next(_names)}") for _ in range(N_USERS)
        ]
        self.staff = user_model.objects.create(username=f"model-{next(_names)}", is_staff=True)
        make_operator(self.staff)
        self.model = LedgerModel(
            fixed={
                label: {
                    op: registry.get(label).fixed_amount(op) or 0
                    for op in ("SIGNUP_CREDIT", "DAILY_REWARD")
                }
                for label in LEDGERS
            }
        )
        for label in LEDGERS:
            ledger = registry.get(label)
            for user in [*self.users, self.staff]:
                self.model.balances[(label, user.pk)] = 0
                for entry in ledger.entry_model.objects.filter(user_id=user.pk):
                    assert entry.operation == "SIGNUP_CREDIT"
                    self.model.signed_up.add((label, user.pk))
                    self.model.balances[(label, user.pk)] += entry.amount
                    self.model.entries[(label, entry.pk)] = ModelEntry(
                        label, user.pk, entry.operation, entry.amount
                    )

    # --- helpers ------------------------------------------------------------------------------

    def _actor(self, actor: str, target: Any) -> tuple[Any, int | None]:
        if actor == "system":
            return None, None
        if actor == "staff":
            return self.staff, self.staff.pk
        if actor == "self":
            return target, target.pk
        other = next(u for u in self.users if u.pk != target.pk)
        return other, other.pk

    def _post(self, request: dict[str, Any]) -> None:
        STEPS["operations"] += 1
        ledger = registry.get(request["ledger"])
        actor_name = request["actor"]
        target = self.users[request["user"]]
        target_pk = target.pk
        actor, actor_id = self._actor(actor_name, target)
        expected = self.model.post(
            ledger=request["ledger"],
            user=target_pk,
            operation=request["operation"],
            amount=request["amount"],
            actor=actor_name,
            actor_id=actor_id,
            key=request["key"],
            description=request["description"],
            metadata=request["metadata"],
        )
        try:
            result = entry_post(
                ledger=ledger,
                user_id=target_pk,
                operation=request["operation"],
                amount=request["amount"],
                actor=actor,
                idempotency_key=request["key"],
                description=request["description"],
                metadata=request["metadata"],
            )
        except LedgerError as exc:
            assert expected.kind == "refuse", f"{request}: refused {exc.code}, model: {expected}"
            assert exc.code == expected.code, f"{request}: {exc.code} != model {expected.code}"
            STEPS["refused"] += 1
            return
        assert expected.kind != "refuse", f"{request}: accepted, model says {expected.code}"
        entry = result.entry
        if expected.kind == "replay":
            assert result.replayed and entry.pk == expected.entry_id, request
            STEPS["replayed"] += 1
            return
        assert not result.replayed, request
        assert entry.amount == expected.amount and entry.user_id == target_pk, request
        assert entry.operation == request["operation"]
        assert entry.balance_after == self.model.balances[(request["ledger"], target_pk)] + (
            expected.amount
        )
        fingerprint = (
            actor_id,
            request["operation"],
            expected.amount,
            request["description"],
            json.dumps(request["metadata"] or {}),
        )
        self.model.apply_post(
            ledger=request["ledger"],
            user=target_pk,
            operation=request["operation"],
            signed=expected.amount,
            key=request["key"],
            fp=fingerprint,
            eid=entry.pk,
        )
        STEPS["accepted"] += 1

    # --- rules --------------------------------------------------------------------------------

    @rule(
        ledger=st.sampled_from(LEDGERS),
        user=st.integers(0, N_USERS - 1),
        operation=st.sampled_from(OPERATIONS),
        amount=AMOUNTS,
        actor=ACTORS,
        key=KEYS,
        description=DESCRIPTIONS,
        metadata=METADATA,
    )
    def post(self, **request: Any) -> None:
        if request["key"] is not None:
            self.history.append(dict(request))
        self._post(request)

    @rule(
        ledger=st.sampled_from(LEDGERS),
        user=st.integers(0, N_USERS - 1),
        operation=st.sampled_from(["CREDIT_SPEND", "DAILY_REWARD", "CREDIT_ADD"]),
        amount=st.integers(1, 120),
        actor=st.sampled_from(["system", "self", "staff"]),
        key=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]), st.uuids().map(str)),
    )
    def valid_post(
        self, ledger: str, user: int, operation: str, amount: int, actor: str, key: str | None
    ) -> None:
        """A well-formed request (mostly accepted), so balances and histories grow."""
        request = {
            "ledger": ledger,
            "user": user,
            "operation": operation,
            "amount": None if operation == "DAILY_REWARD" else amount,
            "actor": actor,
            "key": key,
            "description": "",
            "metadata": None,
        }
        if key is not None:
            self.history.append(dict(request))
        self._post(request)

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data())
    def retry_same_request(self, data: st.DataObject) -> None:
        """A client retry: the same key with exactly the same request."""
        self._post(dict(data.draw(st.sampled_from(self.history))))

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data(), amount=st.integers(1, 150), description=st.sampled_from(["", "other"]))
    def reuse_key_differently(self, data: st.DataObject, amount: int, description: str) -> None:
        """The same key with a changed amount or description."""
        request = dict(data.draw(st.sampled_from(self.history)))
        request["amount"] = amount
        request["description"] = description
        self._post(request)

    @rule(
        ledger=st.sampled_from(LEDGERS),
        data=st.data(),
        actor=st.sampled_from(["system", "staff", "self"]),
        reason=st.sampled_from(["mistake", "mistake", "", "   ", "r" * 501]),
    )
    def reverse(self, ledger: str, data: st.DataObject, actor: str, reason: str) -> None:
        STEPS["operations"] += 1
        ids = sorted(eid for (label, eid) in self.model.entries if label == ledger)
        entry_id = data.draw(st.sampled_from([*ids, 2**62]))
        original = self.model.entries.get((ledger, entry_id))
        owner = next((u for u in self.users if original and u.pk == original.user), self.users[0])
        actor_obj = {"system": None, "staff": self.staff, "self": owner}[actor]
        expected = self.model.reverse(
            ledger=ledger,
            entry_id=entry_id,
            actor=actor if actor != "self" else "user",
            reason=reason,
        )
        try:
            entry = entry_reverse(
                ledger=registry.get(ledger), entry_id=entry_id, reason=reason, actor=actor_obj
            )
        except LedgerError as exc:
            assert expected.kind == "refuse" and exc.code == expected.code, (
                f"reverse {entry_id} by {actor} ({reason!r}): {exc.code}, model {expected}"
            )
            STEPS["refused"] += 1
            return
        assert expected.kind == "ok", f"reverse {entry_id}: accepted, model {expected}"
        assert original is not None
        assert entry.amount == expected.amount and entry.reverses_id == entry_id
        assert entry.user_id == original.user
        original.reversed = True
        self.model.balances[(ledger, original.user)] += expected.amount
        self.model.entries[(ledger, entry.pk)] = ModelEntry(
            ledger, original.user, "REVERSAL", expected.amount
        )
        STEPS["accepted"] += 1

    @rule(
        ledger=st.sampled_from(LEDGERS),
        user=st.integers(0, N_USERS - 1),
        operation=st.sampled_from(
            ["CREDIT_SPEND", "CREDIT_SPEND", "GAME_ENTRY_FEE", "PURCHASE", "CREDIT_ADD", "EXPIRY"]
        ),
        amount=st.one_of(st.integers(1, 120), st.sampled_from([0, -3, None, MAX_AMOUNT + 1])),
        actor=ACTORS,
    )
    def place_hold(self, ledger: str, user: int, operation: str, amount: Any, actor: str) -> None:
        STEPS["operations"] += 1
        target = self.users[user]
        actor_obj, actor_id = self._actor(actor, target)
        expected = self.model.place_hold(
            ledger=ledger, user=target.pk, operation=operation, amount=amount, actor=actor
        )
        led = registry.get(ledger)
        try:
            result = hold_place(
                ledger=led,
                user_id=target.pk,
                operation=led.operation(operation)
                if operation in led.operations.values
                else operation,
                amount=amount,
                actor=actor_obj,
            )
        except LedgerError as exc:
            assert expected.kind == "refuse" and exc.code == expected.code, (
                f"hold {operation} {amount} by {actor}: {exc.code}, model {expected}"
            )
            STEPS["refused"] += 1
            return
        assert expected.kind == "ok", (
            f"hold {operation} {amount} by {actor}: placed, model {expected}"
        )
        hold = result.hold
        assert (hold.amount, hold.user_id, hold.status) == (amount, target.pk, "pending")
        self.model.holds[(ledger, hold.pk)] = ModelHold(
            ledger, target.pk, operation, amount, actor_id
        )
        self.model.held[(ledger, target.pk)] = self.model.held.get((ledger, target.pk), 0) + amount
        STEPS["accepted"] += 1
        STEPS["holds"] += 1

    @rule(
        ledger=st.sampled_from(LEDGERS),
        user=st.integers(0, N_USERS - 1),
        amount=st.integers(1, 30),
        actor=st.sampled_from(["system", "self", "staff"]),
    )
    def valid_hold(self, ledger: str, user: int, amount: int, actor: str) -> None:
        """A well-formed hold (mostly placed), so captures and releases have something to do."""
        self.place_hold(
            ledger=ledger, user=user, operation="CREDIT_SPEND", amount=amount, actor=actor
        )

    @precondition(lambda self: bool(self.model.holds) if hasattr(self, "model") else False)
    @rule(
        data=st.data(),
        capture=st.booleans(),
        how_much=st.sampled_from(["all", "all", "part", "part", "zero", "over"]),
        actor=ACTORS,
    )
    def resolve_hold(self, data: st.DataObject, capture: bool, how_much: str, actor: str) -> None:
        STEPS["operations"] += 1
        # Mostly a pending hold (a resolution to make), sometimes any (a second one to refuse).
        pending = sorted(k for k, h in self.model.holds.items() if h.status == "pending")
        pick_pending = bool(pending) and data.draw(st.integers(0, 3)) > 0
        keys = pending if pick_pending else sorted(self.model.holds)
        ledger, hold_id = data.draw(st.sampled_from(keys))
        hold = self.model.holds[(ledger, hold_id)]
        amount: Any = {
            "all": None,
            "zero": 0,
            "over": hold.amount + 1,
            "part": data.draw(st.integers(1, hold.amount)),
        }[how_much]
        self._resolve(ledger, hold_id, capture=capture, amount=amount, actor=actor)

    @precondition(
        lambda self: (
            any(h.status == "pending" for h in self.model.holds.values())
            if hasattr(self, "model")
            else False
        )
    )
    @rule(data=st.data(), whole=st.booleans())
    def valid_capture(self, data: st.DataObject, whole: bool) -> None:
        """A well-formed capture of a pending hold by the system, so that every run has some."""
        STEPS["operations"] += 1
        pending = sorted(k for k, h in self.model.holds.items() if h.status == "pending")
        ledger, hold_id = data.draw(st.sampled_from(pending))
        hold = self.model.holds[(ledger, hold_id)]
        amount = None if whole else data.draw(st.integers(1, hold.amount))
        self._resolve(ledger, hold_id, capture=True, amount=amount, actor="system")

    def _resolve(
        self, ledger: str, hold_id: int, *, capture: bool, amount: Any, actor: str
    ) -> None:
        hold = self.model.holds[(ledger, hold_id)]
        owner = next(u for u in self.users if u.pk == hold.user)
        actor_obj, actor_id = self._actor(actor, owner)
        expected = self.model.resolve_hold(
            ledger=ledger,
            hold_id=hold_id,
            capture=capture,
            amount=amount if capture else None,
            actor_id=actor_id,
            staff=actor == "staff",
        )
        led = registry.get(ledger)
        try:
            if capture:
                result = hold_capture(ledger=led, hold_id=hold_id, amount=amount, actor=actor_obj)
            else:
                result = hold_release(ledger=led, hold_id=hold_id, actor=actor_obj)
        except LedgerError as exc:
            assert expected.kind == "refuse" and exc.code == expected.code, (
                f"{'capture' if capture else 'release'} {hold} ({amount}) by {actor}: "
                f"{exc.code}, model {expected}"
            )
            STEPS["refused"] += 1
            return
        assert expected.kind == "ok", f"resolve {hold} by {actor}: done, model {expected}"
        stored = result.hold
        hold.status = "captured" if capture else "released"
        assert stored.status == hold.status
        self.model.held[(ledger, hold.user)] -= hold.amount
        if capture:
            taken = expected.amount
            assert stored.captured_amount == taken and stored.entry_id is not None
            entry = led.entry_model.objects.get(pk=stored.entry_id)
            assert entry.amount == -taken and entry.hold_id == hold_id
            self.model.balances[(ledger, hold.user)] -= taken
            self.model.entries[(ledger, entry.pk)] = ModelEntry(
                ledger, hold.user, hold.operation, -taken
            )
            STEPS["captures"] += 1
        STEPS["accepted"] += 1

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def balances_match_model_and_ledger_is_sound(self) -> None:
        if not self.users:
            return
        ids = [u.pk for u in self.users] + [self.staff.pk]
        for label in LEDGERS:
            ledger = registry.get(label)
            stored = dict(
                ledger.balance_model.objects.filter(user_id__in=ids).values_list(
                    "user_id", "balance"
                )
            )
            held = dict(
                ledger.balance_model.objects.filter(user_id__in=ids).values_list("user_id", "held")
            )
            for user_id in ids:
                assert held.get(user_id, 0) == self.model.held.get((label, user_id), 0)
                assert stored.get(user_id, 0) == self.model.balances[(label, user_id)], (
                    f"{label} user {user_id}: stored {stored.get(user_id)} != "
                    f"model {self.model.balances[(label, user_id)]}"
                )
            assert ledger.entry_model.objects.filter(user_id__in=ids).count() == sum(
                1 for (lab, _), _e in self.model.entries.items() if lab == label
            )
            problems = ledger_check(ledger=ledger, user_ids=ids)
            assert not problems, [str(p) for p in problems]


def test_service_layer_matches_the_model(figures: Any) -> None:
    """Hypothesis drives the machine; every decision and balance must match the model."""
    for key in STEPS:
        STEPS[key] = 0
    # Credits that never expire here: lots (the draw order, whole-lot reversals, expiry) are
    # test_model_lots.py's model; holds on lots are in tests/services/test_holds.py.
    never = override_settings(
        SHARED_LEDGER_EXPIRES_AFTER={
            label: dict.fromkeys(("DAILY_REWARD", "REFERRAL_BONUS")) for label in LEDGERS
        }
    )
    with never:
        _run_machine()
    print(f"model test: {STEPS}")
    for name, value in STEPS.items():
        figures(f"model {name}", value)
    assert STEPS["accepted"] > 0 and STEPS["refused"] > 0 and STEPS["replayed"] > 0
    assert STEPS["holds"] > 0 and STEPS["captures"] > 0


def _run_machine() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            # Longer runs: RELIABILITY_MODEL_EXAMPLES=500 RELIABILITY_MODEL_STEPS=60 pytest ...
            max_examples=int(os.environ.get("RELIABILITY_MODEL_EXAMPLES", "40")),
            stateful_step_count=int(os.environ.get("RELIABILITY_MODEL_STEPS", "30")),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )

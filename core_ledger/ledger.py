"""The ledger declaration an app makes, and the registry of every declared ledger.

An app declares its ledger in ``<app>/ledger.py``::

    ledger = Ledger(
        label="alpha",
        name="Alpha (game)",
        entry_model=AlphaEntry,
        balance_model=AlphaBalance,
        operations=AlphaOperation,
        rules={AlphaOperation.GAME_WIN: OperationRule(Direction.CREDIT, PostedBy.STAFF)},
        fixed_amounts={SharedOperation.SIGNUP_CREDIT: 100, SharedOperation.DAILY_REWARD: 10},
    )

and its ``AppConfig`` subclasses :class:`core_ledger.apps.LedgerAppConfig`, which registers it.
The shared operations' rules come from the core; the app only adds rules for its own operations.
Fixed amounts can be overridden per ledger in ``settings.SHARED_LEDGER_FIXED_AMOUNTS``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from core_ledger.exceptions import UnknownLedger
from core_ledger.operations import OperationChoices, SharedOperation

if TYPE_CHECKING:
    from core_ledger.models import AbstractBalance, AbstractLedgerEntry


class Direction(enum.Enum):
    """Whether an operation credits (+) or debits (-) the account; the client never sends a sign."""

    CREDIT = "credit"
    DEBIT = "debit"

    @property
    def sign(self) -> int:
        return 1 if self is Direction.CREDIT else -1


class PostedBy(enum.Enum):
    """Who may post an operation.

    ``USER``: the account holder for their own account (and staff or a service for anyone).
    ``STAFF``: staff users or service accounts holding the ledger's ``post_any_entry`` permission.
    ``SYSTEM``: only the ledger itself (signup credit on user creation, reversals, commands).
    """

    USER = "user"
    STAFF = "staff"
    SYSTEM = "system"


class Frequency(enum.Enum):
    """How often one user may receive an operation; ONCE and DAILY are unique constraints in SQL."""

    ONCE = "once"
    DAILY = "daily"
    ANY = "any"


@dataclass(frozen=True)
class OperationRule:
    """The policy of one operation. ``direction`` is None only for REVERSAL (sign of the original)."""

    direction: Direction | None
    posted_by: PostedBy
    frequency: Frequency = Frequency.ANY
    fixed: bool = False


SHARED_RULES: Mapping[str, OperationRule] = {
    SharedOperation.DAILY_REWARD: OperationRule(
        Direction.CREDIT, PostedBy.USER, Frequency.DAILY, fixed=True
    ),
    SharedOperation.SIGNUP_CREDIT: OperationRule(
        Direction.CREDIT, PostedBy.SYSTEM, Frequency.ONCE, fixed=True
    ),
    SharedOperation.CREDIT_SPEND: OperationRule(Direction.DEBIT, PostedBy.USER),
    SharedOperation.CREDIT_ADD: OperationRule(Direction.CREDIT, PostedBy.STAFF),
    SharedOperation.REVERSAL: OperationRule(None, PostedBy.SYSTEM),
}

DEFAULT_FIXED_AMOUNTS: Mapping[str, int] = {
    SharedOperation.SIGNUP_CREDIT: 100,
    SharedOperation.DAILY_REWARD: 10,
}


@dataclass
class Ledger:
    """One app's ledger: its models, its operations and the rule of each operation."""

    label: str
    name: str
    entry_model: type[AbstractLedgerEntry]
    balance_model: type[AbstractBalance]
    operations: OperationChoices
    rules: Mapping[str, OperationRule] = field(default_factory=dict)
    fixed_amounts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = {str(op): rule for op, rule in self.rules.items()}
        overlap = set(own) & set(SHARED_RULES)
        if overlap:
            raise ValueError(
                f"Ledger {self.label!r} redeclares shared operations: {sorted(overlap)}"
            )
        self.rules = {**{str(k): v for k, v in SHARED_RULES.items()}, **own}
        values = set(self.operations.values)
        missing = values - set(self.rules)
        unknown = set(self.rules) - values
        if missing or unknown:
            raise ValueError(
                f"Ledger {self.label!r}: operations without a rule {sorted(missing)}, "
                f"rules without an operation {sorted(unknown)}."
            )
        self.fixed_amounts = {str(k): int(v) for k, v in self.fixed_amounts.items()}

    def rule(self, operation: str) -> OperationRule:
        return self.rules[operation]

    def fixed_amount(self, operation: str) -> int | None:
        """The amount a fixed operation always posts: settings, then the declaration, then core."""
        if not self.rules[operation].fixed:
            return None
        configured: Mapping[str, Any] = getattr(settings, "SHARED_LEDGER_FIXED_AMOUNTS", {}).get(
            self.label, {}
        )
        if operation in configured:
            return int(configured[operation])
        if operation in self.fixed_amounts:
            return self.fixed_amounts[operation]
        return DEFAULT_FIXED_AMOUNTS.get(operation)

    @property
    def post_permission(self) -> str:
        """The permission that makes an account a service for this ledger (posts anything)."""
        return f"{self.entry_model._meta.app_label}.post_any_entry"


class LedgerRegistry:
    """Every declared ledger by label; filled from each ledger app's ``AppConfig.ready``."""

    def __init__(self) -> None:
        self._ledgers: dict[str, Ledger] = {}

    def register(self, ledger: Ledger) -> None:
        existing = self._ledgers.get(ledger.label)
        if existing is not None and existing is not ledger:
            raise ValueError(f"A ledger labelled {ledger.label!r} is registered already.")
        self._ledgers[ledger.label] = ledger

    def get(self, label: str) -> Ledger:
        try:
            return self._ledgers[label]
        except KeyError:
            raise UnknownLedger(
                f"No ledger {label!r}. Known ledgers: {', '.join(sorted(self._ledgers)) or 'none'}.",
                ledger=label,
            ) from None

    def for_model(self, model: type[Any]) -> Ledger:
        for ledger in self._ledgers.values():
            if model in (ledger.entry_model, ledger.balance_model):
                return ledger
        raise UnknownLedger(f"No ledger uses {model.__name__}.")

    def labels(self) -> list[str]:
        return sorted(self._ledgers)

    def __iter__(self) -> Iterator[Ledger]:
        return iter(sorted(self._ledgers.values(), key=lambda ledger: ledger.label))

    def __len__(self) -> int:
        return len(self._ledgers)


registry = LedgerRegistry()

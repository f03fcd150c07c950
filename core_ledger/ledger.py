"""The ledger declaration an app makes, and the registry of every declared ledger.

An app declares its ledger in ``<app>/ledger.py``::

    ledger = Ledger(
        label="alpha",
        name="Alpha (game)",
        entry_model=AlphaEntry,
        balance_model=AlphaBalance,
        operations=AlphaOperation,
        rules={AlphaOperation.GAME_WIN: OperationRule(Direction.CREDIT, PostedBy.STAFF)},
        fixed_amounts={AlphaOperation.SIGNUP_CREDIT: 100, AlphaOperation.DAILY_REWARD: 10},
    )

and its ``AppConfig`` subclasses :class:`core_ledger.apps.LedgerAppConfig`, which registers it.
``Ledger`` is generic over its entry model, balance model and operations class, so to a
type-checker ``ledger.entry_model.objects.get()`` is an ``AlphaEntry`` and posting a
``BetaOperation`` to it is an error. The shared operations' rules come from the core; the app adds
rules for its own operations only. A broken declaration is reported by ``manage.py check``
(:mod:`core_ledger.checks`), not by an exception at import time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, router

from core_ledger.conf import app_settings
from core_ledger.exceptions import UnknownLedger, ValidationFailed
from core_ledger.operations import LedgerOperation, SharedOperation

if TYPE_CHECKING:
    from core_ledger.models import AbstractBalance, AbstractHold, AbstractLedgerEntry, AbstractLot

EntryT = TypeVar("EntryT", bound="AbstractLedgerEntry")
BalanceT = TypeVar("BalanceT", bound="AbstractBalance")
OpT = TypeVar("OpT", bound=LedgerOperation)


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
    SharedOperation.DAILY_REWARD.value: OperationRule(
        Direction.CREDIT, PostedBy.USER, Frequency.DAILY, fixed=True
    ),
    SharedOperation.SIGNUP_CREDIT.value: OperationRule(
        Direction.CREDIT, PostedBy.SYSTEM, Frequency.ONCE, fixed=True
    ),
    SharedOperation.CREDIT_SPEND.value: OperationRule(Direction.DEBIT, PostedBy.USER),
    SharedOperation.CREDIT_ADD.value: OperationRule(Direction.CREDIT, PostedBy.STAFF),
    SharedOperation.REVERSAL.value: OperationRule(None, PostedBy.SYSTEM),
    # Written by the ledger itself when a lot's expires_at passes (ledger_expire, or before the
    # user's next write): a debit of what was left in the lot.
    SharedOperation.EXPIRY.value: OperationRule(Direction.DEBIT, PostedBy.SYSTEM),
}

DEFAULT_FIXED_AMOUNTS: Mapping[str, int] = {
    SharedOperation.SIGNUP_CREDIT.value: 100,
    SharedOperation.DAILY_REWARD.value: 10,
}


@dataclass(eq=False)
class Ledger(Generic[EntryT, BalanceT, OpT]):
    """One app's ledger: its models, its operations class and the rule of each own operation."""

    label: str
    name: str
    entry_model: type[EntryT]
    balance_model: type[BalanceT]
    operations: type[OpT]
    lot_model: type[AbstractLot]
    hold_model: type[AbstractHold]
    rules: Mapping[OpT, OperationRule] = field(default_factory=dict)
    fixed_amounts: Mapping[OpT, int] = field(default_factory=dict)
    expires_after: Mapping[OpT, timedelta] = field(default_factory=dict)
    _all_rules: dict[str, OperationRule] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Shared rules first; the app's own rules cannot replace them (system check E020).
        own = {str(op): rule for op, rule in self.rules.items() if str(op) not in SHARED_RULES}
        self._all_rules = {**SHARED_RULES, **own}

    # --- operations: the one edge where outside strings become members ------------------------

    def operation(self, value: str | LedgerOperation) -> OpT:
        """``value`` as this ledger's operation member; ``validation_error`` if it has none.

        JSON bodies, forms and command arguments pass through here once; code past this edge
        handles members only.
        """
        try:
            return self.operations(str(value))
        except ValueError:
            raise ValidationFailed(
                f"Unknown operation {str(value)!r} in ledger {self.label!r}.",
                operation=[f"Must be one of: {', '.join(self.operations.values)}."],
            ) from None

    def shared(self, operation: SharedOperation) -> OpT:
        """This ledger's member for a shared operation (``ledger.shared(SharedOperation.X)``)."""
        return self.operations(operation.value)

    @property
    def operation_rules(self) -> Mapping[str, OperationRule]:
        """Every operation's rule by value: the shared rules, then the app's own."""
        return self._all_rules

    def rule(self, operation: str) -> OperationRule:
        """The rule of ``operation`` (a member of this ledger's operations)."""
        return self._all_rules[str(operation)]

    def fixed_amount(self, operation: str) -> int | None:
        """The amount a fixed operation always posts: settings, then the declaration, then core."""
        key = str(operation)
        if not self._all_rules[key].fixed:
            return None
        configured = app_settings.FIXED_AMOUNTS.get(self.label, {})
        value = configured.get(key) if isinstance(configured, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        # A configured value that is not a positive integer is ignored here and reported by
        # system check E030, rather than failing every post (or the URLconf) with a 500.
        declared = {str(op): amount for op, amount in self.fixed_amounts.items()}
        if key in declared:
            return int(declared[key])
        return DEFAULT_FIXED_AMOUNTS.get(key)

    def lifetime(self, operation: str) -> timedelta | None:
        """How long a credit of ``operation`` lasts when the post gives no ``expires_at``.

        ``SHARED_LEDGER_EXPIRES_AFTER[label][operation]`` (seconds, or None: never) first, then
        the declaration's ``expires_after``; None means the credits never expire.
        """
        key = str(operation)
        if self._all_rules[key].direction is not Direction.CREDIT:
            return None
        configured = app_settings.EXPIRES_AFTER.get(self.label, {})
        if isinstance(configured, Mapping) and key in configured:
            seconds = configured[key]
            if seconds is None:
                return None
            if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
                return timedelta(seconds=seconds)
            # Anything else is reported by system check E031 and ignored here.
        declared = {str(op): lifetime for op, lifetime in self.expires_after.items()}
        return declared.get(key)

    # --- where it lives -------------------------------------------------------------------------

    @property
    def db_alias(self) -> str:
        """The database the ledger writes to: ``SHARED_LEDGER_DATABASE``, else the routers."""
        return app_settings.DATABASE or router.db_for_write(self.entry_model) or DEFAULT_DB_ALIAS

    @property
    def app_label(self) -> str:
        return self.entry_model._meta.app_label

    @property
    def post_permission(self) -> str:
        """Post any operation for any user (services and operators)."""
        return f"{self.app_label}.post_any_entry"

    @property
    def reverse_permission(self) -> str:
        """Reverse entries of this ledger."""
        return f"{self.app_label}.reverse_entry"

    @property
    def view_all_permission(self) -> str:
        """Read every user's balance and entries in this ledger (not only one's own)."""
        return f"{self.app_label}.view_all_accounts"

    @property
    def operator_permissions(self) -> tuple[str, ...]:
        """What ``ledger_operators --grant`` gives: the three rights and the admin's view pages."""
        return (
            self.post_permission,
            self.reverse_permission,
            self.view_all_permission,
            *(
                f"{self.app_label}.view_{model._meta.model_name}"
                for model in (
                    self.entry_model,
                    self.balance_model,
                    self.lot_model,
                    self.hold_model,
                )
            ),
        )


AnyLedger = Ledger[Any, Any, Any]
"""A ledger whose models and operations the code does not know (the registry's, generic code)."""


class LedgerRegistry:
    """Every declared ledger by label; filled from each ledger app's ``AppConfig.ready``."""

    def __init__(self) -> None:
        self._ledgers: dict[str, AnyLedger] = {}
        # Second declarations of a label, kept for system check E040 instead of raising in ready().
        self.duplicates: list[AnyLedger] = []

    def register(self, ledger: AnyLedger) -> None:
        existing = self._ledgers.get(ledger.label)
        if existing is not None and existing is not ledger:
            self.duplicates.append(ledger)
            return
        self._ledgers[ledger.label] = ledger

    def get(self, label: str) -> AnyLedger:
        try:
            return self._ledgers[label]
        except KeyError:
            raise UnknownLedger(
                f"No ledger {label!r}. Known ledgers: {', '.join(sorted(self._ledgers)) or 'none'}.",
                ledger=label,
            ) from None

    def for_model(self, model: type[Any]) -> AnyLedger:
        for ledger in self._ledgers.values():
            if model in (
                ledger.entry_model,
                ledger.balance_model,
                ledger.lot_model,
                ledger.hold_model,
            ):
                return ledger
        raise UnknownLedger(f"No ledger uses {model.__name__}.")

    def labels(self) -> list[str]:
        return sorted(self._ledgers)

    def __iter__(self) -> Iterator[AnyLedger]:
        return iter(sorted(self._ledgers.values(), key=lambda ledger: ledger.label))

    def __len__(self) -> int:
        return len(self._ledgers)


registry = LedgerRegistry()

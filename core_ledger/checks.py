"""System checks that catch a broken ledger declaration at start-up, not at the first post.

Each has its own id, a message and a hint (README "System checks"):

- E001/E002: the entry or balance model does not subclass the core's abstract model;
- E003: the entry model's ``operation`` choices are not the declared operations class;
- E004: the hold model does not subclass ``AbstractHold``, or it and the entry model do not
  point at each other (``hold_entry_field(Entry)`` / ``entry_hold_field("Hold")``);
- E010: the operations class lacks a shared member, reorders them, or changes a value or label;
- E011: the declaration's ``operations`` is not a ``LedgerOperation`` subclass;
- E020: a rule for an operation the class lacks, or a rule that redeclares a shared operation;
- E021: an own operation without a rule;
- E030: a fixed amount (declaration or ``SHARED_LEDGER_FIXED_AMOUNTS``) that is not a positive
  integer;
- E031: a lifetime (declaration ``expires_after`` or ``SHARED_LEDGER_EXPIRES_AFTER``) that is
  not a positive duration, or that is given to an operation that is not a credit;
- E040: two ledgers with one label;
- E050/E051/E052: a concrete model whose ``Meta`` dropped a constraint, index or trigger of the
  core's (the guards behind idempotency, once-a-day, non-negative, append-only, held within the
  balance and a resolved hold's finality).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.core import checks
from django.db import models

from core_ledger.conf import app_settings
from core_ledger.ledger import SHARED_RULES, AnyLedger, Direction, registry
from core_ledger.models import AbstractBalance, AbstractHold, AbstractLedgerEntry
from core_ledger.operations import LedgerOperation, shared_members_problem


def _error(ledger: AnyLedger | str, msg: str, hint: str | None, id: str) -> checks.Error:
    label = ledger if isinstance(ledger, str) else ledger.label
    return checks.Error(f"Ledger {label!r}: {msg}", hint=hint, id=f"core_ledger.{id}")


def _is_amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _names(items: Iterable[Any], model: type[models.Model]) -> set[str]:
    """The names of ``items`` as the concrete ``model`` has them (placeholders filled in)."""
    meta = model._meta
    return {
        str(item.name) % {"app_label": meta.app_label.lower(), "class": meta.model_name}
        for item in items
    }


def _core_meta(
    abstract: type[AbstractLedgerEntry] | type[AbstractBalance] | type[AbstractHold],
) -> tuple[Sequence[Any], Sequence[Any], Sequence[Any]]:
    meta: Any = abstract.Meta  # the abstract class's own Meta keeps the declared lists
    return (
        getattr(meta, "constraints", []),
        getattr(meta, "indexes", []),
        getattr(meta, "triggers", []),
    )


def _dropped_guards(ledger: AnyLedger) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    pairs: list[tuple[Any, Any]] = [
        (ledger.entry_model, AbstractLedgerEntry),
        (ledger.balance_model, AbstractBalance),
        (ledger.hold_model, AbstractHold),
    ]
    for model, abstract in pairs:
        if not isinstance(model, type) or not issubclass(model, abstract):
            continue
        constraints, indexes, triggers = _core_meta(abstract)
        meta: Any = getattr(model, "_meta")  # noqa: B009  # narrowed to a plain type here
        for kind, core, own, id in (
            ("constraints", constraints, meta.constraints, "E050"),
            ("indexes", indexes, meta.indexes, "E051"),
            ("triggers", triggers, getattr(meta, "triggers", []), "E052"),
        ):
            missing = sorted(_names(core, model) - _names(own, model))
            if missing:
                errors.append(
                    _error(
                        ledger,
                        f"{model.__name__}.Meta.{kind} lacks the core's {', '.join(missing)}.",
                        f"Extend the core's list: {kind} = [*{abstract.__name__}.Meta.{kind}, ...].",
                        id,
                    )
                )
    return errors


def _fixed_amount_errors(ledger: AnyLedger) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for op, amount in ledger.fixed_amounts.items():
        if not _is_amount(amount):
            errors.append(
                _error(
                    ledger,
                    f"fixed amount of {op} is {amount!r}, not a positive integer.",
                    "Give a whole number of credits greater than 0.",
                    "E030",
                )
            )
    return errors


def _lifetime_errors(ledger: AnyLedger) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for op, lifetime in ledger.expires_after.items():
        rule = ledger.operation_rules.get(str(op))
        if not isinstance(lifetime, timedelta) or lifetime <= timedelta(0):
            problem = f"lifetime of {op} is {lifetime!r}, not a positive timedelta"
        elif rule is None or rule.direction is not Direction.CREDIT:
            problem = f"{op} has a lifetime but is not a credit operation"
        else:
            continue
        errors.append(
            _error(ledger, problem + ".", "e.g. expires_after={Op.X: timedelta(days=7)}", "E031")
        )
    return errors


def check_lifetime_settings() -> list[checks.CheckMessage]:
    """``SHARED_LEDGER_EXPIRES_AFTER``: per ledger, per credit operation, seconds or None."""
    raw = app_settings.raw("EXPIRES_AFTER")
    if raw is None:
        return []
    hint = 'e.g. SHARED_LEDGER_EXPIRES_AFTER = {"alpha": {"DAILY_REWARD": 604800}}'
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        return [
            checks.Error(
                "SHARED_LEDGER_EXPIRES_AFTER must map ledger labels to {operation: seconds}.",
                hint=hint,
                id="core_ledger.E031",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for label, lifetimes in raw.items():
        for op, seconds in lifetimes.items():
            if seconds is not None and not _is_amount(seconds):
                errors.append(
                    _error(
                        str(label),
                        f"SHARED_LEDGER_EXPIRES_AFTER gives {op} {seconds!r}, not a positive "
                        "number of seconds or None.",
                        hint,
                        "E031",
                    )
                )
    return errors


@checks.register()
def check_ledgers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for ledger in registry:
        errors.extend(check_ledger(ledger))
    for duplicate in registry.duplicates:
        errors.append(
            _error(
                duplicate,
                f"declared twice (by {duplicate.app_label} and "
                f"{registry.get(duplicate.label).app_label}).",
                "Give each ledger its own label.",
                "E040",
            )
        )
    errors.extend(check_fixed_amount_settings())
    errors.extend(check_lifetime_settings())
    return errors


def check_ledger(ledger: AnyLedger) -> list[checks.CheckMessage]:
    """Every problem of one ledger declaration (also used by the tests on broken copies)."""
    errors: list[checks.CheckMessage] = []
    if not isinstance(ledger.entry_model, type) or not issubclass(
        ledger.entry_model, AbstractLedgerEntry
    ):
        errors.append(
            _error(ledger, "entry_model must subclass AbstractLedgerEntry.", None, "E001")
        )
    if not isinstance(ledger.balance_model, type) or not issubclass(
        ledger.balance_model, AbstractBalance
    ):
        errors.append(_error(ledger, "balance_model must subclass AbstractBalance.", None, "E002"))
    ops = ledger.operations
    if not isinstance(ops, type) or not issubclass(ops, LedgerOperation):
        errors.append(
            _error(
                ledger,
                "operations must be a subclass of core_ledger.operations.LedgerOperation.",
                "Declare class YourOperation(LedgerOperation) with the shared members first.",
                "E011",
            )
        )
        return errors
    problem = shared_members_problem(ops)
    if problem:
        errors.append(
            _error(
                ledger,
                f"{ops.__name__} {problem}.",
                "Start the class with DAILY_REWARD, SIGNUP_CREDIT, CREDIT_SPEND, CREDIT_ADD and "
                "REVERSAL exactly as core_ledger.operations.SharedOperation declares them, then "
                "append your own.",
                "E010",
            )
        )
    values = set(ops.values)
    declared = {str(op) for op in ledger.rules}
    unknown = sorted(declared - values)
    if unknown:
        errors.append(
            _error(
                ledger,
                f"rules for operations {ops.__name__} lacks: {', '.join(unknown)}.",
                f"Add them to {ops.__name__} or remove their rules.",
                "E020",
            )
        )
    shared_redeclared = sorted(declared & set(SHARED_RULES))
    if shared_redeclared:
        errors.append(
            _error(
                ledger,
                f"rules redeclare shared operations: {', '.join(shared_redeclared)}.",
                "The core owns the rules of shared operations; declare rules for your own only.",
                "E020",
            )
        )
    without_rule = sorted(values - declared - set(SHARED_RULES))
    if without_rule:
        errors.append(
            _error(
                ledger,
                f"operations without a rule: {', '.join(without_rule)}.",
                "Give each own operation an OperationRule in the declaration's rules.",
                "E021",
            )
        )
    errors.extend(_fixed_amount_errors(ledger))
    errors.extend(_lifetime_errors(ledger))
    if isinstance(ledger.entry_model, type) and issubclass(ledger.entry_model, AbstractLedgerEntry):
        field = ledger.entry_model._meta.get_field("operation")
        choices = {value for value, _ in (getattr(field, "choices", None) or [])}
        if choices != values:
            errors.append(
                _error(
                    ledger,
                    "the entry model's operation choices differ from the declared operations.",
                    "Use operation = operation_field(YourOperation) on the entry model.",
                    "E003",
                )
            )
    errors.extend(_hold_model_errors(ledger))
    errors.extend(_dropped_guards(ledger))
    return errors


def _hold_model_errors(ledger: AnyLedger) -> list[checks.CheckMessage]:
    hold = ledger.hold_model
    hint = (
        "Declare class YourHold(AbstractHold) with entry = hold_entry_field(YourEntry), and "
        'hold = entry_hold_field("YourHold") on the entry model.'
    )
    if not isinstance(hold, type) or not issubclass(hold, AbstractHold):
        return [_error(ledger, "hold_model must subclass AbstractHold.", hint, "E004")]
    entry = ledger.entry_model
    if not isinstance(entry, type) or not issubclass(entry, AbstractLedgerEntry):
        return []  # E001 says it
    fields = {f.name: f for f in hold._meta.get_fields()}
    entry_fields = {f.name: f for f in entry._meta.get_fields()}
    to_entry = getattr(fields.get("entry"), "related_model", None)
    to_hold = getattr(entry_fields.get("hold"), "related_model", None)
    if to_entry is not entry or to_hold is not hold:
        return [
            _error(
                ledger,
                "the hold model's entry and the entry model's hold must point at each other.",
                hint,
                "E004",
            )
        ]
    return []


def check_fixed_amount_settings() -> list[checks.CheckMessage]:
    """``SHARED_LEDGER_FIXED_AMOUNTS``: known ledgers, fixed operations, positive integers."""
    raw = app_settings.raw("FIXED_AMOUNTS")
    if raw is None:
        return []
    hint = 'e.g. SHARED_LEDGER_FIXED_AMOUNTS = {"alpha": {"DAILY_REWARD": 10}}'
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        return [
            checks.Error(
                "SHARED_LEDGER_FIXED_AMOUNTS must map ledger labels to {operation: amount}.",
                hint=hint,
                id="core_ledger.E030",
            )
        ]
    errors: list[checks.CheckMessage] = []
    for label, amounts in raw.items():
        for op, amount in amounts.items():
            if not _is_amount(amount):
                errors.append(
                    _error(
                        str(label),
                        f"SHARED_LEDGER_FIXED_AMOUNTS gives {op} {amount!r}, not a positive "
                        "integer.",
                        hint,
                        "E030",
                    )
                )
    return errors


# Caches whose contents one worker process cannot share with another.
_PROCESS_LOCAL_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@checks.register()
def check_shared_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """With DEBUG off, throttle counters need a cache every worker shares (W001)."""
    from django.conf import settings

    backend = str(settings.CACHES.get("default", {}).get("BACKEND", ""))
    if settings.DEBUG or backend not in _PROCESS_LOCAL_CACHES:
        return []
    return [
        checks.Warning(
            f"The default cache is process-local ({backend.rsplit('.', 1)[-1]}) while DEBUG is "
            "off: every worker keeps its own throttle counters, so the API's rate limits "
            "(including the token endpoint's) multiply by the number of workers.",
            hint="Set CACHE_URL to a shared cache, e.g. redis://127.0.0.1:6379/0.",
            id="core_ledger.W001",
        )
    ]

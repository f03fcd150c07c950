"""The only code that writes ledger rows: post, reverse, bulk grant, signup credits.

Every write locks the user's balance row first (one conditional ``UPDATE … RETURNING`` or upsert),
then inserts the entry with the new ``balance_after``, inside one transaction: two statements,
the minimum round trips. The row lock serialises writers per (ledger, user); the ``CHECK
(balance >= 0)`` and the unique indexes are the database's own guard behind the Python checks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    connection,
    connections,
    transaction,
)

from core_ledger.exceptions import (
    AlreadyClaimed,
    AlreadyReversed,
    EntryNotFound,
    IdempotencyKeyReused,
    InsufficientCredits,
    LedgerBusy,
    LedgerError,
    OperationNotAllowed,
    ValidationFailed,
)
from core_ledger.ledger import Direction, Frequency, Ledger, OperationRule, PostedBy, registry
from core_ledger.models import (
    DESCRIPTION_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    AbstractLedgerEntry,
)
from core_ledger.operations import SharedOperation

logger = logging.getLogger(__name__)

# Documented limits (README "Limits"). A single post moves at most MAX_AMOUNT credits, so a
# balance would need millions of maximal credits to approach the 64-bit ceiling.
MAX_AMOUNT = 1_000_000_000_000
METADATA_MAX_KEYS = 20
METADATA_KEY_MAX_LENGTH = 64
METADATA_VALUE_MAX_LENGTH = 500
METADATA_MAX_BYTES = 4096
# Users whose grant status a bulk grant reads per round trip (see grant_bulk).
PRECHECK_SIZE = 10_000

Actor = AbstractBaseUser | AnonymousUser | None


@dataclass(frozen=True)
class PostResult:
    """The entry a post produced, and whether it is the replay of an earlier post."""

    entry: AbstractLedgerEntry
    replayed: bool = False


@dataclass
class GrantSummary:
    """What a bulk grant did: ``granted`` new entries, ``skipped`` users that had it already."""

    granted: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.granted + self.skipped + self.failed


# --- validation and policy ---------------------------------------------------------------------


def _is_privileged(ledger: Ledger, actor: Actor) -> bool:
    """Staff, or a service account holding the ledger's ``post_any_entry`` permission."""
    if actor is None or not actor.is_authenticated:
        return False
    if getattr(actor, "is_staff", False):
        return True
    has_perm = getattr(actor, "has_perm", None)  # custom user models may lack PermissionsMixin
    return bool(has_perm and has_perm(ledger.post_permission))


def _authorize(
    *, ledger: Ledger, rule: OperationRule, operation: str, actor: Actor, user_id: int
) -> None:
    if actor is None:  # the system itself: commands, signals, bulk jobs
        return
    if not actor.is_authenticated:
        raise OperationNotAllowed("Sign in to post entries.")
    if rule.posted_by is PostedBy.SYSTEM:
        raise OperationNotAllowed(
            f"{operation} is posted by the ledger itself, not through this endpoint.",
            operation=operation,
        )
    if rule.posted_by is PostedBy.USER and actor.pk == user_id:
        # The account holder's own operation: allowed whoever they are, so skip the permission
        # look-up (has_perm costs two queries on the fresh user object of each API request).
        return
    if _is_privileged(ledger, actor):
        return
    if rule.posted_by is PostedBy.STAFF:
        raise OperationNotAllowed(
            f"Only staff or a service account may post {operation}.",
            operation=operation,
        )
    if actor.pk != user_id:
        raise OperationNotAllowed("You may only post to your own account.", operation=operation)


def _clean_operation(ledger: Ledger, operation: str) -> str:
    if operation not in ledger.rules:
        raise ValidationFailed(
            f"Unknown operation {operation!r} in ledger {ledger.label!r}.",
            operation=[f"Must be one of: {', '.join(ledger.operations.values)}."],
        )
    return str(operation)


def _signed_amount(ledger: Ledger, operation: str, rule: OperationRule, amount: int | None) -> int:
    fixed = ledger.fixed_amount(operation)
    if rule.fixed:
        if amount is not None:
            raise ValidationFailed(
                f"{operation} has a fixed amount; do not send one.",
                amount=[f"{operation} always posts {fixed}; omit amount."],
            )
        if not fixed:
            raise OperationNotAllowed(f"{operation} is not offered by ledger {ledger.label!r}.")
        amount = fixed
    if amount is None:
        raise ValidationFailed("amount is required.", amount=["This field is required."])
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed(
            "amount must be a whole number.", amount=["A whole number is required."]
        )
    if not 1 <= amount <= MAX_AMOUNT:
        raise ValidationFailed(
            f"amount must be between 1 and {MAX_AMOUNT}.",
            amount=[
                f"Ensure this value is between 1 and {MAX_AMOUNT}; the operation gives the sign."
            ],
        )
    assert rule.direction is not None
    return rule.direction.sign * amount


def clean_metadata(metadata: Any) -> dict[str, Any]:
    """Check the documented metadata limits; return a plain dict."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationFailed(
            "metadata must be a JSON object.", metadata=["Must be a JSON object."]
        )
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValidationFailed(
            "metadata has too many keys.",
            metadata=[f"At most {METADATA_MAX_KEYS} keys."],
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_MAX_LENGTH:
            raise ValidationFailed(
                "metadata key too long.",
                metadata=[f"Keys are strings of 1 to {METADATA_KEY_MAX_LENGTH} characters."],
            )
        if isinstance(value, str) and len(value) > METADATA_VALUE_MAX_LENGTH:
            raise ValidationFailed(
                "metadata value too long.",
                metadata=[f"String values are at most {METADATA_VALUE_MAX_LENGTH} characters."],
            )
    encoded = json.dumps(metadata, sort_keys=True, allow_nan=False)
    if len(encoded.encode()) > METADATA_MAX_BYTES:
        raise ValidationFailed(
            "metadata too large.",
            metadata=[f"At most {METADATA_MAX_BYTES} bytes as JSON."],
        )
    if "\\u0000" in encoded:
        raise ValidationFailed(
            "metadata cannot contain NUL characters.", metadata=["No NUL characters."]
        )
    return dict(metadata)


def _clean_text(value: str, *, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.", **{name: ["Must be a string."]})
    if len(value) > max_length:
        raise ValidationFailed(
            f"{name} is too long.", **{name: [f"At most {max_length} characters."]}
        )
    if "\x00" in value:
        raise ValidationFailed(f"{name} cannot contain NUL.", **{name: ["No NUL characters."]})
    return value


def _clean_key(key: str | None) -> str | None:
    if key is None:
        return None
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH
        or not key.isprintable()
        or not key.isascii()
    ):
        raise ValidationFailed(
            "Invalid idempotency key.",
            idempotency_key=[f"1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters."],
        )
    return key


def _fingerprint(**parts: Any) -> str:
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


# --- SQL ----------------------------------------------------------------------------------------

_ENTRY_COLUMNS = (
    "id",
    "user_id",
    "operation",
    "amount",
    "balance_after",
    "idempotency_key",
    "request_fingerprint",
    "description",
    "metadata",
    "reverses_id",
    "created_by_id",
    "created_at",
    "day",
)


def _tables(ledger: Ledger) -> tuple[str, str]:
    return _quoted_tables(ledger.entry_model, ledger.balance_model)


@functools.cache
def _quoted_tables(entry_model: type[Any], balance_model: type[Any]) -> tuple[str, str]:
    qn = connection.ops.quote_name
    return qn(entry_model._meta.db_table), qn(balance_model._meta.db_table)


def _prepared_cursor_class() -> Any:
    """psycopg 3's server-side-binding cursor, made to run every statement as a prepared one."""
    try:
        from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]
            ServerBindingCursor,
        )
    except ImportError:  # psycopg2, or no PostgreSQL backend
        return None

    class PreparedCursor(ServerBindingCursor):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            kwargs.setdefault("prepare", True)
            return super().execute(query, params, **kwargs)

    return PreparedCursor


_PreparedCursor = _prepared_cursor_class()


def _statement_cursor() -> Any:
    """A cursor for the post's two statements that the server keeps prepared per connection.

    They are the same two statements on every post; parsing and planning them once per
    connection instead of once per post saves ~0.2 ms of database CPU per post (bench/README).
    Django's wrapper stays around it (error translation, query logging, execute wrappers).
    Django itself turns prepared statements off (``prepare_threshold=None``) for poolers such as
    PgBouncer in transaction mode before 1.21: ``SHARED_LEDGER_PREPARED_STATEMENTS = False``
    gives the plain cursor back.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: each proxy attribute is a look-up
    if (
        _PreparedCursor is None
        or db.vendor != "postgresql"
        or not getattr(settings, "SHARED_LEDGER_PREPARED_STATEMENTS", True)
        # Query logging (DEBUG, assertNumQueries) reads the statement from the cursor, which
        # psycopg leaves empty for a prepared execution: log the plain way instead.
        or db.queries_logged
    ):
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django sets None, which turns even an explicit prepare=True off. A threshold nothing
        # reaches keeps automatic preparation off for every other statement (Django's own
        # cursors bind client-side and never prepare anyway) and lets ours through.
        raw.prepare_threshold = sys.maxsize
    with db.wrap_database_errors:
        return db._prepare_cursor(_PreparedCursor(raw))  # type: ignore[attr-defined]


def _constraint_name(exc: BaseException) -> str:
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    return (getattr(diag, "constraint_name", None) or "") if diag is not None else ""


def _sqlstate(exc: BaseException) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


def _write(
    *,
    ledger: Ledger,
    user_id: int,
    operation: str,
    amount: int,
    actor_id: int | None,
    idempotency_key: str | None = None,
    fingerprint: str = "",
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
    reverses_id: int | None = None,
) -> AbstractLedgerEntry:
    """Move the balance and append the entry in one transaction: two statements."""
    entry_table, balance_table = _tables(ledger)
    metadata_json = json.dumps(dict(metadata), allow_nan=False) if metadata else "{}"
    with transaction.atomic(), _statement_cursor() as cursor:
        if amount > 0:
            cursor.execute(
                f"INSERT INTO {balance_table} AS b (user_id, balance, updated_at) "
                "VALUES (%s, %s, clock_timestamp()) ON CONFLICT (user_id) DO UPDATE "
                "SET balance = b.balance + EXCLUDED.balance, updated_at = EXCLUDED.updated_at "
                "RETURNING balance",
                [user_id, amount],
            )
        else:
            cursor.execute(
                f"UPDATE {balance_table} SET balance = balance + %s, updated_at = clock_timestamp() "
                "WHERE user_id = %s AND balance + %s >= 0 RETURNING balance",
                [amount, user_id, amount],
            )
        row = cursor.fetchone()
        if row is None:
            raise InsufficientCredits(
                f"The balance is too low for a debit of {-amount}.", requested=-amount
            )
        balance_after = row[0]
        cursor.execute(
            f"WITH t AS (SELECT clock_timestamp() AS ts) INSERT INTO {entry_table} "
            "(user_id, operation, amount, balance_after, idempotency_key, request_fingerprint, "
            "description, metadata, reverses_id, created_by_id, created_at, day) "
            "SELECT %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, t.ts, "
            "(t.ts AT TIME ZONE 'UTC')::date FROM t RETURNING id, created_at, day",
            [
                user_id,
                operation,
                amount,
                balance_after,
                idempotency_key,
                fingerprint,
                description,
                metadata_json,
                reverses_id,
                actor_id,
            ],
        )
        entry_id, created_at, day = cursor.fetchone()
    return _entry_instance(
        ledger,
        id=entry_id,
        user_id=user_id,
        operation=operation,
        amount=amount,
        balance_after=balance_after,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        description=description,
        metadata=json.loads(metadata_json) if metadata else {},
        reverses_id=reverses_id,
        created_by_id=actor_id,
        created_at=created_at,
        day=day,
    )


@functools.cache
def _attnames(model: type[Any]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def _entry_instance(ledger: Ledger, **values: Any) -> AbstractLedgerEntry:
    """The entry just written, as a saved model instance (no query to read it back)."""
    # Positional values in field order: Model.__init__'s fast path (as when loading a row).
    model: Any = ledger.entry_model
    entry = model(*[values[name] for name in _attnames(model)])
    entry._state.adding = False
    entry._state.db = "default"
    # A new entry has not been reversed: say so, or reading ``entry.reversed_by`` (the API's
    # output does) costs a query per post to learn it.
    reversed_by: Any = entry._meta.get_field("reversed_by")
    reversed_by.set_cached_value(entry, None)
    return entry


def _find_by_key(ledger: Ledger, *, user_id: int, key: str) -> AbstractLedgerEntry | None:
    return ledger.entry_model.objects.filter(user_id=user_id, idempotency_key=key).first()


def _replay(entry: AbstractLedgerEntry, fingerprint: str) -> PostResult:
    if entry.request_fingerprint != fingerprint:
        # Say nothing of the original request: the key may be another caller's.
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request; use a new key."
        )
    return PostResult(entry=entry, replayed=True)


def _translate_db_error(exc: DatabaseError, *, operation: str) -> LedgerError:
    """Map a database refusal to the domain error it means; re-raise what we do not know."""
    constraint = _constraint_name(exc)
    state = _sqlstate(exc)
    if isinstance(exc, IntegrityError):
        if constraint.endswith("_signup_once") or constraint.endswith("_daily_once"):
            what = (
                "today's daily reward"
                if constraint.endswith("_daily_once")
                else "the signup credit"
            )
            return AlreadyClaimed(f"This user has already received {what}.", operation=operation)
        if constraint.endswith("_reverses_id_key") or "reverses" in constraint:
            return AlreadyReversed()
        if constraint.endswith("_nonneg"):
            return InsufficientCredits()
        if state == "23503":  # foreign_key_violation: the user does not exist
            return ValidationFailed("No such user.", user=["No such user."])
    if state in (
        "55P03",
        "57014",
    ):  # lock_not_available, query_canceled (statement timeout)
        return LedgerBusy()
    if state == "22003":  # numeric_value_out_of_range
        return ValidationFailed("The balance would exceed the largest value a ledger holds.")
    raise exc


# --- public services ------------------------------------------------------------------------------


def entry_post(
    *,
    ledger: Ledger,
    user_id: int,
    operation: str,
    amount: int | None = None,
    actor: Actor = None,
    idempotency_key: str | None = None,
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> PostResult:
    """Post one entry under the operation's rule; replay it if the idempotency key was used.

    ``amount`` is positive (the operation gives the sign) and must be omitted for fixed-amount
    operations. ``actor`` is the caller (None: the system). Raises a :class:`LedgerError`.
    """
    operation = _clean_operation(ledger, operation)
    rule = ledger.rule(operation)
    if operation == SharedOperation.REVERSAL:
        raise OperationNotAllowed("Reversals are posted with the reverse action, not as entries.")
    _authorize(ledger=ledger, rule=rule, operation=operation, actor=actor, user_id=user_id)
    signed = _signed_amount(ledger, operation, rule, amount)
    description = _clean_text(
        description or "", name="description", max_length=DESCRIPTION_MAX_LENGTH
    )
    clean_meta = clean_metadata(metadata)
    key = _clean_key(idempotency_key)
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    fingerprint = ""
    if key is not None:
        fingerprint = _fingerprint(
            actor=actor_id,
            operation=operation,
            amount=signed,
            user=user_id,
            description=description,
            metadata=clean_meta,
        )
        existing = _find_by_key(ledger, user_id=user_id, key=key)
        if existing is not None:
            return _replay(existing, fingerprint)
    try:
        entry = _write(
            ledger=ledger,
            user_id=user_id,
            operation=operation,
            amount=signed,
            actor_id=actor_id,
            idempotency_key=key,
            fingerprint=fingerprint,
            description=description,
            metadata=clean_meta,
        )
    except (DatabaseError, InsufficientCredits) as exc:
        # A concurrent request with the same key may have won the race: replay it.
        if key is not None:
            existing = _find_by_key(ledger, user_id=user_id, key=key)
            if existing is not None:
                return _replay(existing, fingerprint)
        if isinstance(exc, InsufficientCredits):
            from core_ledger.selectors import balance_get

            exc.details["balance"] = balance_get(ledger=ledger, user_id=user_id)
            raise
        raise _translate_db_error(exc, operation=operation) from exc
    return PostResult(entry=entry)


def entry_reverse(
    *, ledger: Ledger, entry_id: int, reason: str, actor: Actor = None
) -> AbstractLedgerEntry:
    """Undo an entry with an opposite REVERSAL entry that points at it; once per entry.

    Refused with ``insufficient_credits`` when reversing a credit would take the balance below 0.
    """
    if actor is not None and not _is_privileged(ledger, actor):
        raise OperationNotAllowed("Only staff or a service account may reverse entries.")
    reason = _clean_text(reason or "", name="reason", max_length=DESCRIPTION_MAX_LENGTH).strip()
    if not reason:
        raise ValidationFailed(
            "A reason is required to reverse an entry.",
            reason=["This field is required."],
        )
    original = (
        ledger.entry_model.objects.filter(pk=entry_id)
        .values("id", "user_id", "operation", "amount")
        .first()
    )
    if original is None:
        raise EntryNotFound(f"No entry {entry_id} in ledger {ledger.label!r}.")
    if original["operation"] == SharedOperation.REVERSAL:
        raise OperationNotAllowed("A reversal cannot itself be reversed; post a new entry instead.")
    if ledger.entry_model.objects.filter(reverses_id=entry_id).exists():
        raise AlreadyReversed(f"Entry {entry_id} has already been reversed.")
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    try:
        return _write(
            ledger=ledger,
            user_id=original["user_id"],
            operation=SharedOperation.REVERSAL,
            amount=-original["amount"],
            actor_id=actor_id,
            description=reason,
            metadata={},
            reverses_id=original["id"],
        )
    except InsufficientCredits as exc:
        raise InsufficientCredits(
            f"Reversing entry {entry_id} would take the balance below zero.",
            entry=entry_id,
        ) from exc
    except DatabaseError as exc:
        raise _translate_db_error(exc, operation=SharedOperation.REVERSAL) from exc


def signup_credits_grant(*, user_id: int) -> list[AbstractLedgerEntry]:
    """Give a new user the signup credit of every ledger that offers one (once per ledger)."""
    granted = []
    for ledger in registry:
        if not ledger.fixed_amount(SharedOperation.SIGNUP_CREDIT):
            continue
        try:
            result = entry_post(
                ledger=ledger, user_id=user_id, operation=SharedOperation.SIGNUP_CREDIT
            )
        except AlreadyClaimed:
            continue
        granted.append(result.entry)
    return granted


def _bigint_array(ids: list[int]) -> str:
    """``ids`` as one PostgreSQL array literal, for a ``%s::bigint[]`` parameter.

    Django binds parameters client-side, and psycopg dumps a Python list element by element
    (4 ms for 2,000 ids, twice per statement: 16 ms of a 2,000-user batch); one string is one
    parameter. ``int()`` keeps it a list of integers whatever the caller passed.
    """
    return "{" + ",".join(str(int(i)) for i in ids) + "}"


def _chunks(ids: Iterable[int], size: int) -> Iterable[list[int]]:
    batch: list[int] = []
    for user_id in ids:
        batch.append(user_id)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def grant_bulk(
    *,
    ledger: Ledger,
    operation: str,
    user_ids: Iterable[int],
    amount: int | None = None,
    idempotency_key: str | None = None,
    description: str = "",
    batch_size: int = 2000,
    on_batch: Any = None,
) -> GrantSummary:
    """Credit ``operation`` to many users, a batch per transaction, set-based.

    Idempotent: users who already have it (daily reward today, signup credit, or an entry with
    ``idempotency_key``) are skipped, so a rerun posts nothing new. Balance rows are locked in
    user-id order, so concurrent batches and single posts cannot deadlock. A batch that fails
    as a whole is retried user by user to isolate the culprit.
    """
    operation = _clean_operation(ledger, operation)
    rule = ledger.rule(operation)
    if rule.direction is not Direction.CREDIT:
        raise ValidationFailed(
            f"Only credit operations can be granted in bulk; {operation} is not."
        )
    if not rule.fixed and idempotency_key is None and rule.frequency.value == "any":
        raise ValidationFailed(
            f"A bulk grant of {operation} needs an idempotency key so that a rerun posts nothing twice."
        )
    signed = _signed_amount(ledger, operation, rule, amount)
    description = _clean_text(
        description or "", name="description", max_length=DESCRIPTION_MAX_LENGTH
    )
    key = _clean_key(idempotency_key)
    fingerprint = (
        ""
        if key is None
        else _fingerprint(actor=None, operation=operation, amount=signed, description=description)
    )
    entry_table, balance_table = _tables(ledger)
    summary = GrantSummary()
    sql_ensure = (
        f"INSERT INTO {balance_table} (user_id, balance, updated_at) "
        "SELECT u, 0, clock_timestamp() FROM unnest(%s::bigint[]) AS u ORDER BY u "
        "ON CONFLICT (user_id) DO NOTHING"
    )
    sql_grant = (
        f"WITH locked AS (SELECT user_id, balance FROM {balance_table} "
        "WHERE user_id = ANY(%s::bigint[]) ORDER BY user_id FOR UPDATE), "
        # The time is read after every row lock is held (count(*) drains `locked`), so an entry
        # never predates one it waited for: balance_at reads by time, the chain runs by id.
        "t AS (SELECT clock_timestamp() AS ts FROM (SELECT count(*) FROM locked) AS all_locked), "
        f"ins AS (INSERT INTO {entry_table} (user_id, operation, amount, balance_after, "
        "idempotency_key, request_fingerprint, description, metadata, created_at, day) "
        "SELECT l.user_id, %s, %s, l.balance + %s, %s, %s, %s, '{}'::jsonb, t.ts, "
        "(t.ts AT TIME ZONE 'UTC')::date FROM locked l, t ORDER BY l.user_id "
        "ON CONFLICT DO NOTHING RETURNING user_id) "
        f"UPDATE {balance_table} AS b SET balance = b.balance + %s, updated_at = clock_timestamp() "
        # The ANY() bound lets the planner read the batch's rows by primary key instead of
        # scanning the whole balance table once per batch.
        "FROM ins WHERE b.user_id = ins.user_id AND b.user_id = ANY(%s::bigint[])"
    )
    # Who in a batch still lacks the grant: a read on the unique index that would refuse it, so
    # a rerun locks and writes nothing. Only a shortcut: ON CONFLICT DO NOTHING stays the guard.
    already: list[str] = []
    already_params: list[Any] = []
    if key is not None:
        already.append("e.idempotency_key = %s")
        already_params.append(key)
    if rule.frequency is Frequency.ONCE:
        already.append("e.operation = %s")
        already_params.append(operation)
    elif rule.frequency is Frequency.DAILY:
        # Today read once (an init plan), so that it is part of the index condition.
        already.append(
            "(e.operation = %s AND e.day = (SELECT (clock_timestamp() AT TIME ZONE 'UTC')::date))"
        )
        already_params.append(operation)
    # The same read tells which users still need a balance row (most have one since signup).
    # (A join bounded by ANY(), read on the primary key: an EXISTS per user was planned as a
    # hashed subplan over the whole balance table, 40 ms per batch at 100,000 users.)
    sql_pending = (
        "SELECT u, b.user_id IS NOT NULL FROM unnest(%s::bigint[]) AS u "
        f"LEFT JOIN {balance_table} b ON b.user_id = u AND b.user_id = ANY(%s::bigint[]) WHERE "
        + (
            f"NOT EXISTS (SELECT 1 FROM {entry_table} e WHERE e.user_id = u "
            f"AND ({' OR '.join(already)}))"
            if already
            else "true"
        )
        + " ORDER BY u"
    )

    def grant_batch(pending: list[tuple[int, bool]]) -> None:
        """One transaction: the balance rows of those lacking one, then the grant itself."""
        batch = [user_id for user_id, _ in pending]
        without_balance = [user_id for user_id, has_balance in pending if not has_balance]
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                if without_balance:
                    cursor.execute(sql_ensure, [_bigint_array(without_balance)])
                ids = _bigint_array(batch)
                cursor.execute(
                    sql_grant,
                    [ids, operation, signed, signed, key, fingerprint, description, signed, ids],
                )
                granted = cursor.rowcount
            summary.granted += granted
            summary.skipped += len(batch) - granted
        except DatabaseError:
            logger.warning(
                "Bulk grant batch of %d failed; retrying one by one",
                len(batch),
                exc_info=True,
            )
            for user_id in batch:
                try:
                    result = entry_post(
                        ledger=ledger,
                        user_id=user_id,
                        operation=operation,
                        amount=amount,
                        idempotency_key=key,
                        description=description,
                    )
                except (AlreadyClaimed, IdempotencyKeyReused):
                    summary.skipped += 1
                except (LedgerError, DatabaseError) as exc:
                    summary.failed += 1
                    summary.errors.append(f"user {user_id}: {exc}")
                else:
                    if result.replayed:
                        summary.skipped += 1
                    else:
                        summary.granted += 1

    # The pre-check reads up to PRECHECK_SIZE users per round trip (a rerun is mostly these
    # reads); the writes still go batch_size users per transaction.
    for chunk in _chunks(user_ids, max(batch_size, PRECHECK_SIZE)):
        group = sorted(set(chunk))
        with connection.cursor() as cursor:
            ids = _bigint_array(group)
            cursor.execute(sql_pending, [ids, ids, *already_params])
            pending = cursor.fetchall()
        summary.skipped += len(group) - len(pending)
        for first in range(0, len(pending), batch_size):
            grant_batch(pending[first : first + batch_size])
        if on_batch is not None:
            on_batch(len(chunk))
    return summary


__all__ = [
    "MAX_AMOUNT",
    "GrantSummary",
    "PostResult",
    "clean_metadata",
    "entry_post",
    "entry_reverse",
    "grant_bulk",
    "signup_credits_grant",
]

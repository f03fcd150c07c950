"""Abstract ledger models. Each ledger app makes them concrete with its own tables.

The database holds the rules it can: a trigger refuses UPDATE, DELETE and TRUNCATE on entries;
CHECKs keep amounts non-zero, balances non-negative and operations known; partial unique
indexes make signup credits once-per-user, daily rewards once-per-UTC-day and idempotency keys
once-per-user. ``core_ledger.services`` is the only code that writes these tables.
"""

from __future__ import annotations

from typing import Any

import pgtrigger
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now

from core_ledger.operations import LedgerOperation, SharedOperation
from core_ledger.triggers import EVENT_TYPES, entry_events_trigger, hold_events_triggers

# Set per database by the test set-up only (see conftest); lets pytest-django TRUNCATE the
# throwaway test database between transactional tests. UPDATE and DELETE stay refused.
ALLOW_TRUNCATE_SETTING = "shared_ledger.allow_truncate"

OPERATION_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 500
IDEMPOTENCY_KEY_MAX_LENGTH = 255


def operation_field(operations: type[LedgerOperation]) -> models.CharField[str, str]:
    """The concrete entry model's ``operation`` field, with the app's own choices."""
    return models.CharField(
        max_length=OPERATION_MAX_LENGTH,
        choices=operations.choices,
        help_text="What the entry is for; one of the ledger's operations.",
    )


def operation_check(operations: type[LedgerOperation]) -> models.CheckConstraint:
    """A CHECK that keeps raw SQL from writing an operation the ledger does not know."""
    return models.CheckConstraint(
        condition=Q(operation__in=list(operations.values)),
        name="%(app_label)s_%(class)s_known_operation",
    )


class AbstractLedgerEntry(models.Model):
    """One append-only movement of credits for one user.

    ``amount`` is signed (credits positive, debits negative) and never 0; ``balance_after`` is
    the user's balance right after this entry, so the balance at any past moment is one read.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="%(app_label)s_%(class)s_entries",
        # Covered by the (user, id) index below; a second index would only slow inserts.
        db_index=False,
        help_text="The account holder whose balance the entry moves.",
    )
    operation = models.CharField(max_length=OPERATION_MAX_LENGTH)
    amount = models.BigIntegerField(help_text="Signed credits: positive credits, negative debits.")
    balance_after = models.BigIntegerField(help_text="The user's balance right after this entry.")
    idempotency_key = models.CharField(
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        null=True,
        blank=True,
        help_text="Client key making the write idempotent; unique per user in this ledger.",
    )
    request_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        default="",
        editable=False,
        help_text="Hash of the request that used the idempotency key, to detect a reuse.",
    )
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    reverses = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversed_by",
        help_text="The entry this reversal undoes; an entry can be reversed once.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="%(app_label)s_%(class)s_posted",
        db_index=False,
        help_text="Who posted it; empty for the system (signup credit, commands).",
    )
    created_at = models.DateTimeField(
        help_text="Set by the database after the balance row is locked, so it orders like id."
    )
    day = models.DateField(help_text="UTC date of created_at; daily rewards are unique per day.")
    expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the credits of this entry lapse (an expiring credit is a lot); null: never.",
    )
    lot_moves = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="How this entry moved lots: [[lot entry id or null for credits that never "
        "expire, signed credits]]; null when it moved no lot. Debits draw (negative), reversals "
        "of debits give back (positive), EXPIRY empties its lot.",
    )

    class Meta:
        abstract = True
        ordering = ["-id"]
        # Rights are per ledger and never follow from is_staff (which only opens the admin);
        # `manage.py ledger_operators` grants them in one step. Superusers have all.
        permissions = [
            ("post_any_entry", "Can post any operation for any user (service account)"),
            ("reverse_entry", "Can reverse entries"),
            ("view_all_accounts", "Can view every user's balance and entries"),
        ]
        indexes = [
            # A user's entries in id order, covering the chain's columns: the admin's user
            # filter, and ledger_verify's balance_after chain as an index-only scan (no sort).
            models.Index(
                fields=["user", "id"],
                include=["amount", "balance_after"],
                name="%(app_label)s_%(class)s_chain",
            ),
            models.Index(fields=["user", "created_at"], name="%(app_label)s_%(class)s_user_at"),
            # The admin on a big ledger (see core_ledger.admin.BigTableAdminMixin): exact
            # idempotency key without the user, one operation newest first, a time range (BRIN:
            # created_at follows id in an append-only table, so a few pages of index), and
            # description words (a trigram GIN that serves ``description ILIKE '%word%'``; the
            # pg_trgm extension comes with the migrations).
            models.Index(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_key",
            ),
            models.Index(fields=["operation", "id"], name="%(app_label)s_%(class)s_op"),
            BrinIndex(fields=["created_at"], name="%(app_label)s_%(class)s_at"),
            # The few entries that touch lots (expiring credits, and the debits, reversals and
            # expiries that moved them): ledger_verify's lot checks read these, not the table.
            models.Index(
                fields=["user", "id"],
                condition=Q(lot_moves__isnull=False) | Q(expires_at__isnull=False),
                name="%(app_label)s_%(class)s_lots",
            ),
            GinIndex(
                fields=["description"],
                opclasses=["gin_trgm_ops"],
                name="%(app_label)s_%(class)s_desc",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="%(app_label)s_%(class)s_amount_nonzero"
            ),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0),
                name="%(app_label)s_%(class)s_balance_after_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(operation=SharedOperation.REVERSAL, reverses__isnull=False)
                | (~Q(operation=SharedOperation.REVERSAL) & Q(reverses__isnull=True)),
                name="%(app_label)s_%(class)s_reversal_has_target",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(amount__gt=0),
                name="%(app_label)s_%(class)s_expiry_on_credits",
            ),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(operation=SharedOperation.SIGNUP_CREDIT),
                name="%(app_label)s_%(class)s_signup_once",
            ),
            models.UniqueConstraint(
                fields=["user", "day"],
                condition=Q(operation=SharedOperation.DAILY_REWARD),
                name="%(app_label)s_%(class)s_daily_once",
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete),
            pgtrigger.Trigger(
                name="no_truncate",
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                operation=pgtrigger.Truncate,
                func=(
                    f"IF current_setting('{ALLOW_TRUNCATE_SETTING}', true) IS DISTINCT FROM 'on' THEN "
                    "RAISE EXCEPTION 'ledger entries are append-only: cannot truncate %', TG_TABLE_NAME; "
                    "END IF; RETURN NULL;"
                ),
            ),
            # entry.posted for every row, in the writing statement's transaction (one
            # INSERT ... SELECT per statement over its transition table): core_ledger.triggers.
            entry_events_trigger(),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.operation} {self.amount:+d} → {self.balance_after}"

    @property
    def is_reversed(self) -> bool:
        try:
            return self.reversed_by is not None  # type: ignore[attr-defined]
        except self.__class__.DoesNotExist:
            return False


class AbstractBalance(models.Model):
    """The current balance of one user in one ledger: the row every write to that user locks."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="%(app_label)s_%(class)s",
    )
    balance = models.BigIntegerField(default=0)
    lot_credits = models.BigIntegerField(
        default=0,
        db_default=0,  # raw INSERTs of a balance row (the posting SQL) need not name it
        help_text="Credits left in the user's lots (expiring credits), within balance.",
    )
    next_expiry = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The soonest expires_at of a lot with credits left; null when none.",
    )
    held = models.BigIntegerField(
        default=0,
        db_default=0,
        help_text="Credits reserved by pending holds (expired ones included until written down).",
    )
    next_hold_expiry = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The soonest expires_at of a pending hold; null when none.",
    )
    updated_at = models.DateTimeField(help_text="When the last entry moved this balance.")
    user_id: int  # Django adds the column attribute; declared for checkers without the mypy plugin

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="%(app_label)s_%(class)s_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(lot_credits__gte=0) & Q(lot_credits__lte=F("balance")),
                name="%(app_label)s_%(class)s_lots_within_balance",
            ),
            # A debit may spend only what no hold reserves: balance - held >= 0 at all times.
            models.CheckConstraint(
                condition=Q(held__gte=0) & Q(held__lte=F("balance")),
                name="%(app_label)s_%(class)s_held_within_balance",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.balance}"


def lot_entry_field(entry_model: type[AbstractLedgerEntry]) -> models.OneToOneField[Any, Any]:
    """The concrete lot model's ``entry``: the expiring credit the lot was made by."""
    return models.OneToOneField(
        entry_model,
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="lot",
        help_text="The expiring credit entry this lot holds the credits of.",
    )


class AbstractLot(models.Model):
    """The credits left from one expiring credit entry, spent soonest-expiring first.

    ``remaining`` is the only value that changes, and only under the user's balance row lock
    (``core_ledger.services``); which debits drew from a lot is on their ``lot_moves``
    (append-only, on the entries). The concrete model adds ``entry = lot_entry_field(Entry)``.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="%(app_label)s_%(class)s_lots",
        db_index=False,  # the partial (user, expires_at) index serves every read
    )
    amount = models.BigIntegerField(help_text="Credits the lot started with.")
    remaining = models.BigIntegerField(help_text="Credits left; 0 once spent or expired.")
    expires_at = models.DateTimeField(help_text="From this moment its credits cannot be spent.")

    class Meta:
        abstract = True
        ordering = ["expires_at", "entry_id"]
        indexes = [
            # A user's open lots, soonest first: the draw order and "available".
            models.Index(
                fields=["user", "expires_at"],
                condition=Q(remaining__gt=0),
                name="%(app_label)s_%(class)s_open",
            ),
            # Lots due to expire, for ledger_expire.
            models.Index(
                fields=["expires_at"],
                condition=Q(remaining__gt=0),
                name="%(app_label)s_%(class)s_due",
            ),
            # Every lot of a user (the admin's user filter, ledger_verify of touched users), and
            # the admin's list in its default order, used up or not.
            models.Index(fields=["user", "expires_at"], name="%(app_label)s_%(class)s_user"),
            models.Index(fields=["expires_at", "entry"], name="%(app_label)s_%(class)s_order"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")) & Q(amount__gt=0),
                name="%(app_label)s_%(class)s_remaining_within_amount",
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="lot_kept", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return (
            f"lot #{self.pk}: {self.remaining}/{self.amount} until {self.expires_at:%Y-%m-%d %H:%M}"
        )


def entry_hold_field(hold_model: str) -> models.OneToOneField[Any, Any]:
    """The concrete entry model's ``hold``: the hold a capture entry settles (else null).

    ``hold_model`` is the app's hold model by name (it is declared after the entry model). One to
    one: a hold is captured by at most one entry (a unique index, NULLs apart).
    """
    return models.OneToOneField(
        hold_model,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="capture_entry",
        help_text="The hold this entry captures; null for every other entry.",
    )


def hold_entry_field(entry_model: type[AbstractLedgerEntry]) -> models.OneToOneField[Any, Any]:
    """The concrete hold model's ``entry``: the debit entry that captured it (else null)."""
    return models.OneToOneField(
        entry_model,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="captured_hold",
        help_text="The debit entry the capture posted; null unless captured.",
    )


class AbstractHold(models.Model):
    """Credits of one user reserved for a debit operation, without an entry.

    ``pending`` → ``captured`` (one debit entry for the whole or a smaller amount) | ``released``
    | ``expired``, once: a trigger refuses any UPDATE of a resolved hold, and DELETE. While
    pending, the balance row's ``held`` counts ``amount``; ``lot_moves`` records which lots the
    reservation drew from (taken out of their ``remaining`` until the hold resolves). Only
    ``core_ledger.services.holds`` writes it, under the user's balance row lock. The concrete
    model adds ``entry = hold_entry_field(Entry)``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="%(app_label)s_%(class)s_holds",
        db_index=False,  # the (user, id) index serves it
        help_text="The account holder whose credits are reserved.",
    )
    operation = models.CharField(
        max_length=OPERATION_MAX_LENGTH, help_text="The debit operation a capture posts."
    )
    amount = models.BigIntegerField(help_text="Credits reserved (positive).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    captured_amount = models.BigIntegerField(
        null=True, blank=True, help_text="Credits the capture took (1..amount); null otherwise."
    )
    expires_at = models.DateTimeField(help_text="From this moment the hold cannot be captured.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="%(app_label)s_%(class)s_placed",
        db_index=False,
        help_text="Who placed it (may capture or release it); empty for the system.",
    )
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(
        null=True, blank=True, help_text="When it left pending; null while pending."
    )
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        null=True,
        blank=True,
        help_text="Client key making the placement idempotent; unique per user in this ledger.",
    )
    request_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)
    resolution_key = models.CharField(
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        null=True,
        blank=True,
        editable=False,
        help_text="Idempotency key of the capture or release, if it sent one.",
    )
    resolution_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)
    lot_moves = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="Which lots the reservation drew from: [[lot entry id or null, -credits]], "
        "soonest expiry first; null when it drew from no lot.",
    )

    # Django adds the column attributes; declared for checkers without the mypy plugin.
    user_id: int
    created_by_id: int | None
    entry_id: int | None

    class Meta:
        abstract = True
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["user", "id"], name="%(app_label)s_%(class)s_user_id"),
            # A user's pending holds by expiry: the next hold expiry each resolution recomputes
            # (bounded by the pending holds, never by history), and ledger_expire's batches.
            models.Index(
                fields=["user", "expires_at"],
                condition=Q(status="pending"),
                name="%(app_label)s_%(class)s_pending",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="%(app_label)s_%(class)s_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "captured", "released", "expired"]),
                name="%(app_label)s_%(class)s_known_status",
            ),
            # Captured: an amount within 1..amount and its entry; otherwise neither.
            models.CheckConstraint(
                condition=(
                    Q(status="captured")
                    & Q(captured_amount__gte=1)
                    & Q(captured_amount__lte=F("amount"))
                    & Q(entry__isnull=False)
                )
                | (~Q(status="captured") & Q(captured_amount__isnull=True) & Q(entry__isnull=True)),
                name="%(app_label)s_%(class)s_capture_consistent",
            ),
            models.CheckConstraint(
                condition=Q(status="pending", resolved_at__isnull=True)
                | (~Q(status="pending") & Q(resolved_at__isnull=False)),
                name="%(app_label)s_%(class)s_resolved_at_iff_resolved",
            ),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="%(app_label)s_%(class)s_idempotency_key",
            ),
        ]
        triggers = [
            # A hold leaves pending once, ever: PostgreSQL refuses any change to a resolved one.
            pgtrigger.Protect(
                name="resolved_hold_final",
                operation=pgtrigger.Update,
                condition=pgtrigger.Condition("OLD.status <> 'pending'"),
            ),
            pgtrigger.Protect(name="hold_kept", operation=pgtrigger.Delete),
            # hold.placed / hold.captured / hold.released / hold.expired, in the change's
            # transaction (core_ledger.triggers).
            *hold_events_triggers(),
        ]

    def __str__(self) -> str:
        return f"hold #{self.pk}: {self.operation} {self.amount} ({self.status})"


class ApiToken(models.Model):
    """An API token (``Authorization: Token <token>``) that expires and can be revoked.

    Only the SHA-256 digest of the token is stored: a copy of this table lets nobody call the API.
    The token itself is 256 random bits, so a plain (unsalted, fast) digest is enough to make it
    unguessable from the digest, and it stays a unique, indexed, O(1) look-up. Revoking a token
    deletes its row (``core_ledger.services.tokens``).
    """

    digest = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ledger_api_tokens"
    )
    created = models.DateTimeField(editable=False)
    expiry = models.DateTimeField(db_index=True, editable=False)

    class Meta:
        db_table = "core_ledger_api_token"
        ordering = ["-created"]
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self) -> str:
        return f"{self.digest[:8]}… ({self.user_id})"  # pyright: ignore[reportAttributeAccessIssue]  # the stubs' plugin adds user_id


class VerifyCheckpoint(models.Model):
    """How far ``ledger_verify`` has proven a ledger: one row per ledger label.

    ``entry_id`` is the high-water mark: every entry with an id up to it was checked, with the
    balances and lots of its user, by the run that wrote the row. An incremental run
    (``ledger_verify`` without ``--full``) checks only the entries after it, and the seam: the
    first new entry of each user chains from that user's last entry at or before the mark.
    """

    ledger = models.CharField(max_length=100, primary_key=True)
    entry_id = models.BigIntegerField(help_text="Every entry up to this id has been verified.")
    verified_at = models.DateTimeField(help_text="When the run that set the mark finished.")
    full = models.BooleanField(help_text="Whether that run was a full one.")
    entries_checked = models.BigIntegerField(default=0)

    class Meta:
        db_table = "core_ledger_verify_checkpoint"
        verbose_name = "verification checkpoint"

    def __str__(self) -> str:
        return f"{self.ledger}: verified up to entry {self.entry_id} at {self.verified_at:%Y-%m-%d %H:%M}"


# --- change events and webhooks ------------------------------------------------------------------


class Xid8Field(models.BigIntegerField):  # type: ignore[type-arg]
    """A PostgreSQL ``xid8``: a 64-bit transaction id that never wraps around.

    Read as ``int``; written as text, which PostgreSQL casts to ``xid8``. Compare it in SQL
    (``xid8`` has no cast from ``bigint``), as :mod:`core_ledger.feed` does.
    """

    description = "PostgreSQL 64-bit transaction id (xid8)"

    def db_type(self, connection: Any) -> str:
        return "xid8"

    def rel_db_type(self, connection: Any) -> str:
        return "xid8"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return None if value is None else str(int(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> int | None:
        return None if value is None else int(value)


class Event(models.Model):
    """One change of a ledger (``entry.posted``; holds add their own types), written by a
    database trigger in the transaction of the change: there is an event for every committed
    change and none for a rolled-back one.

    ``xid`` is the writing transaction (``pg_current_xact_id()``); the feed hands events out in
    ``(xid, id)`` order, and only once every transaction that could still add an event before
    them has ended (:mod:`core_ledger.feed`). ``data`` is the changed row as JSON plus
    ``"balance": {"balance", "available"}`` after the change; the feed renders it in the API's
    shape.
    """

    id = models.BigAutoField(primary_key=True)
    xid = Xid8Field(
        db_default=models.Func(
            function="pg_current_xact_id", output_field=models.BigIntegerField()
        ),
        editable=False,
        help_text="The transaction that wrote the event (xid8).",
    )
    ledger = models.CharField(max_length=50, help_text="The ledger's label.")
    type = models.CharField(max_length=64, help_text="entry.posted, …")
    object_id = models.BigIntegerField(help_text="The id of the entry (or hold) that changed.")
    created_at = models.DateTimeField(db_default=Now())
    data = models.JSONField(help_text="The row as JSON, with the balance after the change.")

    class Meta:
        db_table = "core_ledger_event"
        ordering = ["xid", "id"]
        indexes = [models.Index(fields=["xid", "id"], name="core_ledger_event_feed")]
        constraints = [
            models.CheckConstraint(
                condition=Q(type__in=list(EVENT_TYPES)), name="core_ledger_event_known_type"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type} {self.ledger}:{self.object_id}"


class WebhookEndpoint(models.Model):
    """Where the delivery worker POSTs events, signed with ``secret`` (shown once, at creation).

    The secret is kept as is because signing needs it (an HMAC key, not a password). Each
    endpoint has its own cursor into the feed: events after ``(cursor_xid, cursor_id)`` are
    delivered in feed order, one at a time. A failed delivery sets ``next_attempt_at`` (backoff,
    ``attempts`` so far on the event at the cursor); when the backoff runs out the endpoint is
    marked ``failing`` and waits for an operator (admin "resume", or ``ledger_webhook enable``).
    """

    url = models.URLField(max_length=2000)
    event_types = ArrayField(
        models.CharField(max_length=64),
        default=list,
        blank=True,
        help_text="Event types to deliver; empty: every type.",
    )
    ledgers = ArrayField(
        models.CharField(max_length=50),
        default=list,
        blank=True,
        help_text="Ledger labels to deliver; empty: every ledger.",
    )
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    cursor_xid = Xid8Field(default=0, editable=False)
    cursor_id = models.BigIntegerField(default=0, editable=False)
    attempts = models.PositiveIntegerField(
        default=0, editable=False, help_text="Failed attempts on the next event to deliver."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    failing = models.BooleanField(
        default=False, help_text="Retries ran out; nothing is delivered until it is resumed."
    )
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    delivered = models.BigIntegerField(default=0, editable=False)

    class Meta:
        db_table = "core_ledger_webhook_endpoint"
        ordering = ["id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return f"#{self.pk} {self.url}"


class WebhookDelivery(models.Model):
    """One delivery attempt of one event to one endpoint: what happened and when."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    attempt = models.PositiveIntegerField(help_text="1 for the first try of this event.")
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    success = models.BooleanField(default=False)
    duration_ms = models.IntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "core_ledger_webhook_delivery"
        ordering = ["-id"]
        verbose_name = "webhook delivery attempt"
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="core_ledger_delivery_endpoint"),
            models.Index(fields=["event"], name="core_ledger_delivery_event"),
        ]

    def __str__(self) -> str:
        outcome = self.status_code if self.status_code is not None else self.error[:40]
        return f"event {self.event_id} → endpoint {self.endpoint_id} #{self.attempt}: {outcome}"  # pyright: ignore[reportAttributeAccessIssue]  # the stubs' plugin adds *_id

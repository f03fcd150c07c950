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
from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.db.models import F, Q

from core_ledger.operations import LedgerOperation, SharedOperation

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

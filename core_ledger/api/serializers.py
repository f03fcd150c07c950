"""Serializers: input shapes (validated, nothing the server owns) and output shapes, per ledger.

Each ledger gets its own entry serializer classes, built once by :func:`entry_serializer_for`
and :func:`entry_create_serializer_for`, named after the ledger (``AlphaEntry``,
``AlphaEntryCreate``): the OpenAPI schema then shows each ledger's own operation enum under its
own component name, and a new ledger needs no serializer code at all.
"""

from __future__ import annotations

import copy
import functools
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib.auth import get_user_model
from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.utils import html

from core_ledger.api.schema import MAX_ID, NO_NUL_PATTERN
from core_ledger.exceptions import ValidationFailed
from core_ledger.ledger import AnyLedger, Direction, Frequency, PostedBy, registry
from core_ledger.models import DESCRIPTION_MAX_LENGTH, AbstractHold, AbstractLedgerEntry
from core_ledger.operations import LedgerOperation
from core_ledger.services import MAX_AMOUNT, METADATA_MAX_BYTES, METADATA_MAX_KEYS, clean_metadata
from core_ledger.services.holds import MAX_EXPIRES_IN, MIN_EXPIRES_IN, effective_status
from core_ledger.services.policy import is_privileged
from core_ledger.services.validation import METADATA_KEY_MAX_LENGTH, METADATA_VALUE_MAX_LENGTH

METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": METADATA_MAX_KEYS,
    "propertyNames": {
        "minLength": 1,
        "maxLength": METADATA_KEY_MAX_LENGTH,
        "pattern": NO_NUL_PATTERN,
    },
    "additionalProperties": {
        # Nested values are any JSON: a recursive schema would say "no NUL at any depth", but
        # client generators (openapi-python-client) cannot read a recursive union.
        "anyOf": [
            {"type": "string", "maxLength": METADATA_VALUE_MAX_LENGTH, "pattern": NO_NUL_PATTERN},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {}},
            {"type": "object", "additionalProperties": {}},
        ]
    },
    "description": (
        f"A JSON object: at most {METADATA_MAX_KEYS} keys of 1 to {METADATA_KEY_MAX_LENGTH} "
        f"characters, string values of at most {METADATA_VALUE_MAX_LENGTH} characters, no NUL "
        f"anywhere, and at most {METADATA_MAX_BYTES} bytes as JSON (sorted keys, ASCII escapes)."
    ),
}
"""The metadata limits (``clean_metadata``) as far as JSON Schema can say them. Not said: the
total size as JSON, and no NUL inside nested values (README "API contract")."""


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: DRF's IntegerField would take ``true``, ``"5"`` and ``5.0``.

    Credits are whole numbers; a float or a string is a client bug we refuse rather than round.
    """

    default_error_messages = {"invalid": "A whole number (JSON integer) is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField would turn ``5.5`` into ``"5.5"``.

    DRF refuses NUL characters in every CharField; the validator says so in the schema too.
    """

    default_error_messages = {"invalid": "A string is required."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(RegexValidator(NO_NUL_PATTERN, "No NUL characters."))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 (and Python) allow.

    Raises ``OverflowError`` when the moment falls outside the years 1-9999 once in UTC.
    """
    return value.astimezone(dt_timezone.utc)


class UtcDateTimeField(serializers.DateTimeField):
    """An ISO 8601 moment, normalised to UTC before it reaches a query.

    In a query string an empty value (``?at=``) is refused, not read as "left out": the schema
    says ``date-time``, and an empty string is not one.
    """

    default_error_messages = {"range": "The moment is out of range."}

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary) and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> datetime:
        parsed = super().to_internal_value(data)
        try:
            return as_utc(parsed)
        except OverflowError:
            self.fail("range")


@extend_schema_field(METADATA_SCHEMA, component_name="Metadata")
class MetadataField(serializers.JSONField):
    """Free-form JSON object attached to an entry; limits are checked by the service's rules."""


def _class_prefix(label: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", label) if part)


# --- entries -------------------------------------------------------------------------------------


class EntrySerializer(serializers.ModelSerializer[AbstractLedgerEntry]):
    """An entry as the API shows it. Every field is read-only: only the service writes entries."""

    amount = serializers.IntegerField(
        read_only=True, help_text="Signed credits: positive credits, negative debits."
    )
    metadata = MetadataField(read_only=True)
    reversed_by = serializers.IntegerField(
        source="reversed_by.id",
        read_only=True,
        allow_null=True,
        help_text="The id of the REVERSAL entry that undid this one, if any.",
    )
    expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When these credits lapse (an expiring credit); null: they never expire.",
    )
    drawn_from = serializers.SerializerMethodField(
        help_text="On a debit: which lots paid, soonest expiry first "
        "([{entry: the lot's credit entry, or null for credits that never expire, amount}]); "
        "null on a credit."
    )
    hold = serializers.IntegerField(
        source="hold_id",
        read_only=True,
        allow_null=True,
        help_text="On the debit a capture posted: the hold it captured; null otherwise.",
    )

    class Meta:  # pyright: ignore[reportIncompatibleVariableOverride]  # the stubs' ModelSerializer.Meta exists only in the stubs
        model: Any = AbstractLedgerEntry  # each ledger's subclass sets its concrete model
        fields = [
            "id",
            "user",
            "operation",
            "amount",
            "balance_after",
            "description",
            "metadata",
            "idempotency_key",
            "reverses",
            "reversed_by",
            "created_by",
            "created_at",
            "expires_at",
            "drawn_from",
            "hold",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "array",
            "nullable": True,
            "items": {
                "type": "object",
                "properties": {
                    "entry": {"type": "integer", "nullable": True},
                    "amount": {"type": "integer", "minimum": 1},
                },
                "required": ["entry", "amount"],
            },
        }
    )
    def get_drawn_from(self, entry: AbstractLedgerEntry) -> list[dict[str, Any]] | None:
        if entry.amount > 0:
            return None
        if not entry.lot_moves:
            return [{"entry": None, "amount": -entry.amount}]
        return [{"entry": lot, "amount": -delta} for lot, delta in entry.lot_moves]

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # ModelSerializer rebuilds every field from the model for each instance: about half the
        # CPU of serialising one entry (bench/README). The fields are the same every time, so
        # build them once per class and hand out copies, as DRF does for declared fields.
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built  # type: ignore[attr-defined]
        return copy.deepcopy(built)


class EntryCreateSerializer(serializers.Serializer[Any]):
    """What a client may send to post an entry. Anything else in the body is ignored.

    ``operation`` choices are set per ledger (every operation except those only the ledger
    itself posts: SIGNUP_CREDIT and REVERSAL). The posting rules themselves (who may post what,
    fixed amounts, balance) are the service's; this checks shape only.
    """

    operation = serializers.ChoiceField(choices=[])
    amount = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=MAX_AMOUNT,
        help_text="Positive credits; the operation's direction gives the sign. Omit it for "
        "fixed-amount operations (DAILY_REWARD).",
    )
    user = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="The account to post to. Regular users may omit it (their own account) or send "
        "their own id; staff and service accounts must send it.",
    )
    description = StrictCharField(
        required=False, allow_blank=True, default="", max_length=DESCRIPTION_MAX_LENGTH
    )
    metadata = MetadataField(required=False, default=dict)
    expires_at = UtcDateTimeField(
        required=False,
        help_text="Credits only, from a caller with post_any_entry: when these credits lapse "
        "(in the future, at most ten years ahead). Default: the operation's lifetime "
        "(GET /api/ledgers/ expires_after), or never.",
    )

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        """The declared fields, each a shallow copy (DRF deep-copies them on every request).

        A post builds this serializer on every request, and the deep copy re-creates each field
        from deep copies of its arguments (the operation's choices, the validators): about 50 µs
        of the 60 µs it takes, measured in-process. A shallow copy is a new field to bind, and
        shares only what validation reads and never changes (choices, validators, error
        messages). A nested serializer, whose own fields are built lazily, is still deep-copied.
        """
        return {
            name: copy.deepcopy(field)
            if isinstance(field, serializers.BaseSerializer)
            else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    def validate_operation(self, value: str) -> LedgerOperation:
        # The edge where the client's string becomes the ledger's operation member.
        return self.context["view"].ledger.operation(value)  # type: ignore[no-any-return]

    def validate_metadata(self, value: Any) -> dict[str, Any]:
        try:
            return clean_metadata(value)
        except ValidationFailed as exc:
            raise serializers.ValidationError(exc.details.get("metadata", [exc.message])) from None

    def validate_user(self, value: int) -> int:
        request = self.context["request"]
        # Only those who may post for others learn whether an id exists; a regular user naming
        # anyone else is refused by the service (403) whether the account exists or not.
        if (
            value != request.user.pk
            and is_privileged(self.context["view"].ledger, request.user)
            and not get_user_model().objects.filter(pk=value).exists()
        ):
            raise serializers.ValidationError("No such user.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context["request"]
        if "user" not in attrs:
            if is_privileged(self.context["view"].ledger, request.user):
                # A service posting to its own account by omission is almost always a
                # forgotten field: make the target explicit.
                raise serializers.ValidationError(
                    {"user": ["Service accounts and operators must name the account to post to."]}
                )
            attrs["user"] = request.user.pk
        return attrs


class ReverseSerializer(serializers.Serializer[Any]):
    """The body of a reversal: why the entry is being undone (kept as the reversal's description)."""

    reason = StrictCharField(max_length=DESCRIPTION_MAX_LENGTH)


def _postable(ledger: AnyLedger) -> list[tuple[str, str]]:
    return [
        (value, str(label))
        for value, label in ledger.operations.choices
        if ledger.rule(value).posted_by is not PostedBy.SYSTEM
    ]


@functools.cache
def entry_serializer_for(label: str) -> type[EntrySerializer]:
    """``<Label>EntrySerializer``: the entry output shape bound to the ledger's entry model."""
    ledger = registry.get(label)
    meta = type("Meta", (EntrySerializer.Meta,), {"model": ledger.entry_model})
    name = f"{_class_prefix(label)}EntrySerializer"
    return type(name, (EntrySerializer,), {"Meta": meta, "__module__": __name__})


@functools.cache
def _entry_renderer(label: str) -> EntrySerializer:
    """One bound instance per ledger: its fields are built once, not per entry shown."""
    return entry_serializer_for(label)()


def entry_representation(label: str, entry: AbstractLedgerEntry) -> dict[str, Any]:
    """An entry as the API shows it (``GET …/entries/<id>/``), without building a serializer:
    the entry serializer reads no context, so one shared instance renders any entry, from any
    thread (``to_representation`` keeps no state)."""
    return dict(_entry_renderer(label).to_representation(entry))


@functools.cache
def entry_create_serializer_for(label: str) -> type[EntryCreateSerializer]:
    """``<Label>EntryCreateSerializer``: the post input with the ledger's postable operations."""
    ledger = registry.get(label)
    operation = serializers.ChoiceField(
        choices=_postable(ledger),
        help_text="The operation to post. SIGNUP_CREDIT and REVERSAL are posted by the ledger "
        "itself and are refused here (reverse an entry with POST …/entries/{id}/reverse/).",
    )
    name = f"{_class_prefix(label)}EntryCreateSerializer"
    return type(name, (EntryCreateSerializer,), {"operation": operation, "__module__": __name__})


# --- holds ----------------------------------------------------------------------------------------


class HoldSerializer(serializers.ModelSerializer[AbstractHold]):
    """A hold as the API shows it. Every field is read-only: only the service writes holds."""

    status = serializers.SerializerMethodField(
        help_text="pending, captured, released or expired. A pending hold past expires_at reads "
        "expired at once, before ledger_expire writes it down."
    )
    resolved_at = serializers.SerializerMethodField(
        help_text="When it left pending (for an expired hold: its expires_at); null while pending."
    )
    # The ledger's operations enum is set by schema.describe_post_bodies, after drf-spectacular's
    # enum hook: the same choices on entries and holds would make one colliding component.
    operation = serializers.CharField(
        read_only=True, help_text="The debit operation a capture posts (or posted)."
    )
    metadata = MetadataField(read_only=True)
    captured_amount = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Credits the capture took; null otherwise."
    )
    entry = serializers.IntegerField(
        source="entry_id",
        read_only=True,
        allow_null=True,
        help_text="The debit entry the capture posted; null unless captured.",
    )

    class Meta:  # pyright: ignore[reportIncompatibleVariableOverride]  # the stubs' ModelSerializer.Meta exists only in the stubs
        model: Any = AbstractHold  # each ledger's subclass sets its concrete model
        fields = [
            "id",
            "user",
            "operation",
            "amount",
            "status",
            "captured_amount",
            "entry",
            "expires_at",
            "created_by",
            "created_at",
            "resolved_at",
            "description",
            "metadata",
            "idempotency_key",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string"})  # the enum: schema.describe_post_bodies
    def get_status(self, hold: AbstractHold) -> str:
        return effective_status(hold, timezone.now())

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_resolved_at(self, hold: AbstractHold) -> str | None:
        moment = hold.resolved_at
        if moment is None and effective_status(hold, timezone.now()) == "expired":
            moment = hold.expires_at
        return None if moment is None else serializers.DateTimeField().to_representation(moment)


class HoldCreateSerializer(EntryCreateSerializer):
    """What a client may send to place a hold (the ``user`` rules are the entries' own)."""

    amount = StrictIntegerField(
        min_value=1, max_value=MAX_AMOUNT, help_text="Positive credits to reserve."
    )
    expires_in = StrictIntegerField(
        required=False,
        min_value=MIN_EXPIRES_IN,
        max_value=MAX_EXPIRES_IN,
        help_text="Seconds until the hold expires (1 to 604800 = 7 days). Default: "
        "SHARED_LEDGER_HOLD_EXPIRES_IN, 900 (15 minutes).",
    )
    expires_at = None  # type: ignore[assignment]  # holds take expires_in, not a lot's expiry


class HoldCaptureSerializer(serializers.Serializer[Any]):
    """The body of a capture: the credits to take, the whole hold when left out."""

    amount = StrictIntegerField(
        required=False,
        min_value=1,
        max_value=MAX_AMOUNT,
        help_text="1 to the hold's amount; the rest is released. Default: the whole hold.",
    )


class HoldReleaseSerializer(serializers.Serializer[Any]):
    """The body of a release: nothing (an empty object, or no body)."""


def _holdable(ledger: AnyLedger) -> list[tuple[str, str]]:
    return [
        (value, str(label))
        for value, label in ledger.operations.choices
        if ledger.rule(value).posted_by is not PostedBy.SYSTEM
        and ledger.rule(value).direction is Direction.DEBIT
    ]


@functools.cache
def hold_serializer_for(label: str) -> type[HoldSerializer]:
    """``<Label>HoldSerializer``: the hold output shape bound to the ledger's hold model."""
    ledger = registry.get(label)
    meta = type("Meta", (HoldSerializer.Meta,), {"model": ledger.hold_model})
    name = f"{_class_prefix(label)}HoldSerializer"
    return type(name, (HoldSerializer,), {"Meta": meta, "__module__": __name__})


@functools.cache
def hold_create_serializer_for(label: str) -> type[HoldCreateSerializer]:
    """``<Label>HoldCreateSerializer``: the hold input with the ledger's holdable debits."""
    ledger = registry.get(label)
    operation = serializers.ChoiceField(
        choices=_holdable(ledger),
        help_text="The debit operation a capture will post (one the caller may post).",
    )
    name = f"{_class_prefix(label)}HoldCreateSerializer"
    return type(name, (HoldCreateSerializer,), {"operation": operation, "__module__": __name__})


# --- balances ------------------------------------------------------------------------------------


class BalanceSerializer(serializers.Serializer[Any]):
    """One user's balance in one ledger (a balance row, or a :class:`BalanceSnapshot`)."""

    user = serializers.IntegerField(source="user_id", read_only=True)
    balance = serializers.IntegerField(read_only=True)
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the balance last moved; null if never."
    )


class ExpiringLotSerializer(serializers.Serializer[Any]):
    entry = serializers.IntegerField(help_text="The expiring credit entry the lot came from.")
    amount = serializers.IntegerField(help_text="Credits left in the lot.")
    expires_at = serializers.DateTimeField()


class MyBalanceSerializer(BalanceSerializer):
    """The caller's balance, with what they can spend now and what expires next."""

    held = serializers.IntegerField(
        read_only=True,
        help_text="Credits reserved by pending, unexpired holds (0 at a past moment, ?at=).",
    )
    available = serializers.IntegerField(
        read_only=True,
        help_text="What can be spent now: balance minus held, minus credits that expired but are "
        "not yet written down as EXPIRY entries. At a past moment (?at=): the balance then.",
    )
    expiring = ExpiringLotSerializer(
        many=True,
        read_only=True,
        help_text="Unexpired lots with credits left, soonest first (at most 100; empty for ?at=).",
    )


class BalanceQuerySerializer(serializers.Serializer[Any]):
    """Query parameters of the balance endpoint."""

    at = UtcDateTimeField(
        required=False,
        help_text="ISO 8601 moment; the balance right after the last entry up to then.",
    )


# --- ledgers -------------------------------------------------------------------------------------


class OperationSerializer(serializers.Serializer[Any]):
    """One operation of a ledger and its rule."""

    value = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    direction = serializers.ChoiceField(
        choices=[d.value for d in Direction],
        allow_null=True,
        help_text="credit or debit; null for REVERSAL, whose sign is the opposite of the entry it undoes.",
    )
    posted_by = serializers.ChoiceField(
        choices=[p.value for p in PostedBy],
        help_text="user: the account holder (and staff/services); staff: staff and service "
        "accounts; system: only the ledger itself.",
    )
    frequency = serializers.ChoiceField(choices=[f.value for f in Frequency])
    fixed_amount = serializers.IntegerField(allow_null=True)
    expires_after = serializers.IntegerField(
        allow_null=True,
        help_text="Seconds a credit of this operation lasts by default; null: it never expires.",
    )


class LedgerSerializer(serializers.Serializer[Any]):
    """A ledger and its operations."""

    label = serializers.CharField()  # type: ignore[assignment]
    name = serializers.CharField()
    operations = OperationSerializer(many=True)


def _seconds(lifetime: timedelta | None) -> int | None:
    return None if lifetime is None else int(lifetime.total_seconds())


def ledger_description(ledger: AnyLedger) -> dict[str, Any]:
    """The data :class:`LedgerSerializer` shows for ``ledger``."""
    operations = []
    for value, label in ledger.operations.choices:
        rule = ledger.rule(value)
        operations.append(
            {
                "value": value,
                "label": str(label),
                "direction": rule.direction.value if rule.direction else None,
                "posted_by": rule.posted_by.value,
                "frequency": rule.frequency.value,
                "fixed_amount": ledger.fixed_amount(value),
                "expires_after": _seconds(ledger.lifetime(value)),
            }
        )
    return {"label": ledger.label, "name": ledger.name, "operations": operations}


# --- errors and auth -----------------------------------------------------------------------------


class ErrorBodySerializer(serializers.Serializer[Any]):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. insufficient_credits."
    )
    message = serializers.CharField()
    details = serializers.DictField(
        help_text="Per-field messages for validation_error; context otherwise."
    )


# "ErrorResponse", not "Error": a component named like its own property ("error") makes
# openapi-python-client generate a variable that shadows itself (and fail mypy).
@extend_schema_serializer(component_name="ErrorResponse")
class ErrorSerializer(serializers.Serializer[Any]):
    """The one shape of every error response."""

    error = ErrorBodySerializer()


class HealthSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()

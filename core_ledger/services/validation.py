"""Input rules every write path shares: amounts, text, metadata and idempotency keys.

Serializers check shape; these check the ledger's own limits (README "Limits"), so a command, the
admin and the API refuse the same input with the same ``validation_error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from core_ledger.exceptions import OperationNotAllowed, ValidationFailed
from core_ledger.ledger import AnyLedger, Direction, OperationRule
from core_ledger.models import IDEMPOTENCY_KEY_MAX_LENGTH

# A single post moves at most MAX_AMOUNT credits, so a balance would need millions of maximal
# credits to approach the 64-bit ceiling.
MAX_AMOUNT = 1_000_000_000_000
METADATA_MAX_KEYS = 20
METADATA_KEY_MAX_LENGTH = 64
METADATA_VALUE_MAX_LENGTH = 500
METADATA_MAX_BYTES = 4096
METADATA_MAX_DEPTH = 5  # the top-level object is depth 1


def signed_amount(
    ledger: AnyLedger, operation: str, rule: OperationRule, amount: int | None
) -> int:
    """The signed amount to post: the fixed amount, or the client's positive ``amount``."""
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


MAX_LIFETIME = timedelta(days=3653)  # an expires_at is at most ten years ahead


def clean_expires_at(
    ledger: AnyLedger,
    operation: str,
    rule: OperationRule,
    expires_at: datetime | None,
    *,
    privileged: bool,
    now: datetime,
) -> datetime | None:
    """The moment the credits of this post lapse: the post's ``expires_at`` (credits only, from
    a caller with ``post_any_entry`` or the system, in the future, at most ten years ahead), else
    the operation's lifetime from the declaration or settings, else None (never)."""
    if expires_at is None:
        lifetime = ledger.lifetime(operation)
        return None if lifetime is None else now + lifetime
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise ValidationFailed(
            "expires_at must be an ISO 8601 moment with a time zone.",
            expires_at=["An aware date-time is required."],
        )
    if rule.direction is not Direction.CREDIT:
        raise ValidationFailed(
            f"{operation} is not a credit; only credits expire.",
            expires_at=["Only credit operations take expires_at."],
        )
    if not privileged:
        raise ValidationFailed(
            "Only a service account or operator of this ledger may set expires_at.",
            expires_at=["Not allowed for this caller; omit it."],
        )
    if expires_at <= now:
        raise ValidationFailed(
            "expires_at must be in the future.", expires_at=["Must be in the future."]
        )
    if expires_at > now + MAX_LIFETIME:
        raise ValidationFailed(
            "expires_at is too far ahead.", expires_at=["At most ten years ahead."]
        )
    return expires_at


def clean_metadata(metadata: Any) -> dict[str, Any]:
    """Check the documented metadata limits; return a plain dict."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationFailed(
            "metadata must be a JSON object.", metadata=["Must be a JSON object."]
        )
    _check_metadata_value(metadata, depth=1)
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


def _check_metadata_value(value: Any, *, depth: int) -> None:
    """The limits hold at every depth: keys, string lengths, keys per object, and the depth."""
    if isinstance(value, (Mapping, list)) and depth > METADATA_MAX_DEPTH:
        raise ValidationFailed(
            "metadata is nested too deeply.",
            metadata=[f"At most {METADATA_MAX_DEPTH} levels of objects and arrays."],
        )
    if isinstance(value, Mapping):
        if len(value) > METADATA_MAX_KEYS:
            raise ValidationFailed(
                "metadata has too many keys.",
                metadata=[f"At most {METADATA_MAX_KEYS} keys per object."],
            )
        for key, item in value.items():
            if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_MAX_LENGTH:
                raise ValidationFailed(
                    "metadata key too long.",
                    metadata=[f"Keys are strings of 1 to {METADATA_KEY_MAX_LENGTH} characters."],
                )
            _check_metadata_value(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_metadata_value(item, depth=depth + 1)
    elif isinstance(value, str) and len(value) > METADATA_VALUE_MAX_LENGTH:
        raise ValidationFailed(
            "metadata value too long.",
            metadata=[f"String values are at most {METADATA_VALUE_MAX_LENGTH} characters."],
        )


def clean_text(value: str, *, name: str, max_length: int) -> str:
    """``value`` if it is a string of at most ``max_length`` characters without NUL."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.", **{name: ["Must be a string."]})
    if len(value) > max_length:
        raise ValidationFailed(
            f"{name} is too long.", **{name: [f"At most {max_length} characters."]}
        )
    if "\x00" in value:
        raise ValidationFailed(f"{name} cannot contain NUL.", **{name: ["No NUL characters."]})
    return value


def clean_key(key: str | None) -> str | None:
    """An idempotency key: 1-255 printable ASCII characters, or None."""
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

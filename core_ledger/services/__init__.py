"""The only code that writes ledger rows. Each module holds one part a reader can name:

- :mod:`~core_ledger.services.policy`: who may post which operation for whom;
- :mod:`~core_ledger.services.validation`: amounts, text, metadata and key limits;
- :mod:`~core_ledger.services.idempotency`: the request fingerprint, replay and reuse;
- :mod:`~core_ledger.services.sql`: the SQL of a post and the database errors it maps;
- :mod:`~core_ledger.services.posting`: ``entry_post`` and the signup credits;
- :mod:`~core_ledger.services.reversal`: ``entry_reverse``;
- :mod:`~core_ledger.services.bulk`: ``grant_bulk``;
- :mod:`~core_ledger.services.holds`: ``hold_place``, ``hold_capture``, ``hold_release`` and
  ``holds_expire``.

Import the public names from here: ``from core_ledger.services import entry_post``.
"""

from core_ledger.services.bulk import GrantSummary, grant_bulk
from core_ledger.services.holds import (
    HoldResult,
    hold_capture,
    hold_place,
    hold_release,
    holds_expire,
)
from core_ledger.services.idempotency import PostResult
from core_ledger.services.policy import Actor
from core_ledger.services.posting import entry_post, signup_credits_grant
from core_ledger.services.reversal import entry_reverse
from core_ledger.services.validation import (
    MAX_AMOUNT,
    METADATA_MAX_BYTES,
    METADATA_MAX_KEYS,
    clean_metadata,
)

__all__ = [
    "MAX_AMOUNT",
    "METADATA_MAX_BYTES",
    "METADATA_MAX_KEYS",
    "Actor",
    "GrantSummary",
    "HoldResult",
    "PostResult",
    "clean_metadata",
    "entry_post",
    "entry_reverse",
    "grant_bulk",
    "hold_capture",
    "hold_place",
    "hold_release",
    "holds_expire",
    "signup_credits_grant",
]

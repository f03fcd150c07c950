"""Schemathesis hooks for ``test_schemathesis.py`` (loaded by ``st run`` via ``SCHEMATHESIS_HOOKS``).

The only hook drops the few failures that are deliberate: a request the schema allows that the
server refuses for a reason no schema can predict. Each is matched by its exact error code and
field, so any other refusal of schema-valid data still fails the run. README "API contract"
lists them.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

WHOLE_NUMBER = "A whole number (JSON integer) is required."

# (why, status, error code, field in details or None, end of its message or None)
EXCLUSIONS: list[tuple[str, int, str, str | None, str | None]] = [
    # Wrong credentials: which username/password pairs exist is data, not schema.
    ("credentials", 400, "validation_error", "non_field_errors", None),
    # A key the generator happens to reuse with another body is refused: a business rule.
    ("key reused", 422, "idempotency_key_reused", None, None),
    # Cursors are opaque: only the server's next/previous links make valid ones.
    ("opaque cursor", 400, "validation_error", "cursor", "Invalid cursor."),
    # A page past the last one: how many pages exist is data, not schema.
    ("page past the end", 400, "validation_error", "page", None),
    # The account to post to: which ids exist, and that staff must name one, is not schema.
    ("target account", 400, "validation_error", "user", "No such user."),
    (
        "target account",
        400,
        "validation_error",
        "user",
        "Service accounts and operators must name the account to post to.",
    ),
    # An expiry is relative to now (in the future, at most ten years ahead) and reserved to
    # callers with post_any_entry: no schema can say either.
    ("expiry moment", 400, "validation_error", "expires_at", None),
    # A reason of white space only says nothing; a schema pattern for "not only white space" in
    # both Python's and ECMA's sense is one the generators cannot draw from.
    ("blank reason", 400, "validation_error", "reason", "This field may not be blank."),
    # A capture takes at most the hold's own amount: which holds exist, and their amounts, is data.
    ("capture beyond the hold", 400, "validation_error", "amount", "the hold's amount."),
    # JSON Schema 2020-12 counts 2.0 as an integer; the API takes integer literals only.
    ("integer literal", 400, "validation_error", "amount", WHOLE_NUMBER),
    ("integer literal", 400, "validation_error", "user", WHOLE_NUMBER),
    ("integer literal", 400, "validation_error", "expires_in", WHOLE_NUMBER),
    # Metadata's total size as JSON has no JSON Schema keyword; NUL inside nested values would
    # need a recursive schema, which client generators cannot read.
    # ("At most 4096 bytes as JSON.": no Django import here: st loads this module.)
    ("metadata size, nested NUL", 400, "validation_error", "metadata", "bytes as JSON."),
    ("metadata size, nested NUL", 400, "validation_error", "metadata", "No NUL characters."),
    # The key, length, count and depth limits hold at every depth of metadata; the schema says
    # them for the top level only (a recursive schema is what client generators cannot read).
    ("nested metadata", 400, "validation_error", "metadata", "characters."),
    ("nested metadata", 400, "validation_error", "metadata", "keys per object."),
    ("nested metadata", 400, "validation_error", "metadata", "levels of objects and arrays."),
]


def excluded(status: int, body: Any) -> str | None:
    """The reason a refusal of schema-valid data is deliberate, or None if it is a finding.

    A validation error is excluded only if every field it refuses is refused for a listed reason.
    """
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    error = body["error"]
    details = error.get("details") or {}
    reasons = []
    for field, messages in details.items() or [(None, None)]:
        reason = None
        for why, want_status, code, want_field, message in EXCLUSIONS:
            if status != want_status or error.get("code") != code or want_field != field:
                continue
            said = isinstance(messages, list) and any(
                str(m).endswith(str(message)) for m in messages
            )
            if want_field is None or message is None or said:
                reason = why
                break
        reasons.append(reason)
    return reasons[0] if reasons and all(reasons) else None


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if not isinstance(failure, RejectedPositiveData):
        return True
    try:
        body = response.json()
    except ValueError:
        return True
    why = excluded(response.status_code, body)
    if why == "credentials" and case.operation.path != "/api/auth/token/":
        return True
    log = os.environ.get("SCHEMATHESIS_EXCLUSIONS_LOG")
    if why is not None and log:
        with open(log, "a") as out:
            out.write(f"{why}\t{case.operation.label}\n")
    return why is None

"""``Authorization: Token <token>`` against the core's hashed, expiring tokens.

The header is DRF's ``TokenAuthentication`` header; the look-up is by the token's SHA-256 digest
(:class:`core_ledger.models.ApiToken`), and an expired or revoked token is refused like an unknown
one: 401 ``not_authenticated`` with ``WWW-Authenticate: Token``. ``request.auth`` is the
:class:`~core_ledger.models.ApiToken` row, so logout can revoke the token in use.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from core_ledger.models import ApiToken
from core_ledger.services.tokens import token_digest


class ExpiringTokenAuthentication(BaseAuthentication):
    """Token authentication with digests at rest, expiry and revocation."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None  # another scheme, or none: let the next authenticator try
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: send 'Authorization: Token <token>'."
            )
        try:
            token = parts[1].decode("ascii")
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        record = ApiToken.objects.select_related("user").filter(digest=token_digest(token)).first()
        # Unknown, revoked (deleted) and expired tokens answer alike.
        if record is None or record.expiry <= timezone.now():
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        if not record.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return record.user, record

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ExpiringTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]  # drf-spectacular's registering __init_subclass__ is untyped
    """The OpenAPI security scheme of :class:`ExpiringTokenAuthentication`."""

    target_class = "core_ledger.api.authentication.ExpiringTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.keyword
        )
        scheme["description"] = (
            "`Authorization: Token <token>`, with a token from `POST /api/auth/token/`. "
            "Tokens expire (see `expiry`) and can be revoked."
        )
        return scheme

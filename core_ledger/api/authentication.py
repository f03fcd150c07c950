"""``Authorization: Token <token>`` against the core's hashed, expiring tokens.

The header is DRF's ``TokenAuthentication`` header; the look-up is by the token's SHA-256 digest
(:class:`core_ledger.models.ApiToken`), and an expired or revoked token is refused like an unknown
one: 401 ``not_authenticated`` with ``WWW-Authenticate: Token``. ``request.auth`` is the
:class:`~core_ledger.models.ApiToken` row, so logout can revoke the token in use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from core_ledger.backends import permission_rows_sql, remember_permissions
from core_ledger.models import ApiToken
from core_ledger.services.tokens import token_digest

Converter = Callable[[Any, Any, Any], Any]


class _Lookup:
    """The token, its user and the user's permissions in one statement, built once.

    Every API request authenticates, so this is the hottest read there is. The ORM version
    (``select_related``) costs more CPU to build than the database takes to answer, and the
    permission check of a post was a second round trip; this is one prepared-shape statement
    whose rows become model instances through ``from_db`` with the fields' own converters.
    """

    def __init__(self, alias: str) -> None:
        connection = connections[alias]
        qn = connection.ops.quote_name
        self.alias = alias
        self.user_model: Any = get_user_model()
        self.token_fields = list(ApiToken._meta.concrete_fields)
        self.user_fields = list(self.user_model._meta.concrete_fields)
        perms = permission_rows_sql(f"t.{qn('user_id')}")
        self.with_perms = perms is not None
        permissions = (
            f", ARRAY(SELECT x.{qn('app_label')} || '.' || x.{qn('codename')} FROM ({perms}) x)"
            if perms is not None
            else ""
        )
        self.sql = (
            "SELECT "
            + ", ".join(f"t.{qn(f.column)}" for f in self.token_fields)
            + ", "
            + ", ".join(f"u.{qn(f.column)}" for f in self.user_fields)
            + permissions
            + f" FROM {qn(ApiToken._meta.db_table)} t JOIN {qn(self.user_model._meta.db_table)} u "
            f"ON u.{qn(self.user_model._meta.pk.column)} = t.{qn('user_id')} "
            f"WHERE t.{qn('digest')} = %s"
        )
        self.converters = [self._converters(f, connection) for f in self.token_fields] + [
            self._converters(f, connection) for f in self.user_fields
        ]

    def _converters(self, field: Any, connection: Any) -> list[Converter]:
        column = field.get_col(field.model._meta.db_table)
        return [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]

    def find(self, digest: str) -> ApiToken | None:
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [digest])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for i, converters in enumerate(self.converters):
            for convert in converters:
                values[i] = convert(values[i], None, connection)
        n = len(self.token_fields)
        token = ApiToken.from_db(self.alias, [f.attname for f in self.token_fields], values[:n])
        user = self.user_model.from_db(
            self.alias, [f.attname for f in self.user_fields], values[n : n + len(self.user_fields)]
        )
        token.user = user
        if self.with_perms:
            remember_permissions(user, set(values[-1] or ()))
        return token


@functools.cache
def _lookup(alias: str) -> _Lookup:
    return _Lookup(alias)


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
        record = _lookup(router.db_for_read(ApiToken)).find(token_digest(token))
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

"""The token endpoints: log in (a new token), log out (revoke the token in use), log out
everywhere (revoke every token of the caller). Each view is one service call."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core_ledger.api.schema import errors
from core_ledger.api.throttling import LoginAddressThrottle, LoginUsernameThrottle
from core_ledger.models import ApiToken
from core_ledger.selectors import username_field
from core_ledger.services import tokens


class TokenRequestSerializer(serializers.Serializer[Any]):
    """``{"username", "password"}``; ``username`` is the value of the user model's
    ``USERNAME_FIELD`` (which may also be sent under its own name, e.g. ``email``)."""

    username = serializers.CharField(
        max_length=254,
        help_text="The value of the user model's USERNAME_FIELD (also accepted under that name).",
    )
    password = serializers.CharField(max_length=4096, trim_whitespace=False)

    def to_internal_value(self, data: Any) -> Any:
        field = username_field()
        if (
            field != "username"
            and hasattr(data, "copy")
            and data.get("username") is None
            and data.get(field) is not None
        ):
            data = data.copy()  # a dict or a QueryDict: copies are mutable
            data["username"] = data[field]
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = authenticate(
            request=self.context.get("request"),
            username=attrs["username"],
            password=attrs["password"],
        )
        if user is None:
            # One message for an unknown user, a wrong password and an inactive account.
            raise serializers.ValidationError(
                "Unable to log in with the provided credentials.", code="authorization"
            )
        attrs["user"] = user
        return attrs


class TokenResponseSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(
        help_text="Send as `Authorization: Token <token>`. Shown once; only a digest is stored."
    )
    expiry = serializers.DateTimeField(help_text="When the token stops working.")


class TokenView(APIView):
    """Exchange a username and password for a new API token that expires."""

    authentication_classes: list[Any] = []  # pyright: ignore[reportIncompatibleVariableOverride]  # a stale token header must not block a fresh login
    permission_classes = [AllowAny]
    # The general anonymous limit, and the token endpoint's own lower ones per address and per
    # username (API_THROTTLE_LOGIN).
    throttle_classes = [*APIView.throttle_classes, LoginAddressThrottle, LoginUsernameThrottle]

    @extend_schema(
        tags=["auth"],
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={
            200: OpenApiResponse(TokenResponseSerializer, description="A new token."),
            **errors(400, 415, 429, 503),
        },
        auth=[],
        description=(
            "Each call issues a new token, valid until `expiry` (API_TOKEN_TTL, default 10 "
            "hours). Wrong credentials are 400 `validation_error`. Throttled per client "
            "address and per username (API_THROTTLE_LOGIN)."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        issued = tokens.token_create(user_id=serializer.validated_data["user"].pk)
        body = TokenResponseSerializer({"token": issued.token, "expiry": issued.expiry}).data
        return Response(body, status=status.HTTP_200_OK)


class LogoutView(APIView):
    """Revoke the token this request is authenticated with."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        operation_id="auth_logout",
        request=None,
        responses={
            204: OpenApiResponse(description="The token is revoked."),
            **errors(401, 403, 429, 503),
        },
        description="Revoke the token in use; later requests with it are 401. "
        "Other tokens of the caller stay valid. With a session, nothing is revoked.",
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            tokens.token_revoke(token_id=request.auth.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """Revoke every token of the caller."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        operation_id="auth_logout_all",
        request=None,
        responses={
            204: OpenApiResponse(description="Every token of the caller is revoked."),
            **errors(401, 403, 429, 503),
        },
        description="Revoke every token of the caller, the one in use included.",
    )
    def post(self, request: Request) -> Response:
        user_id = request.user.pk
        assert user_id is not None  # IsAuthenticated
        tokens.token_revoke_all(user_id=int(user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

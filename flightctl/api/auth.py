"""Bearer-token authentication for the user API: local tokens (``flightctl-server
create-token`` and the password issuer, flightctl/api/password.py) and the tokens of the login
providers (the configured OIDC issuer and the AuthProvider resources, flightctl/api/oidc.py)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from flightctl.api import oidc
from flightctl.models import ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>``: one of our tokens, or a trusted provider's."""

    keyword = "bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != self.keyword or not token:
            raise exceptions.AuthenticationFailed("invalid Authorization header: expected Bearer")
        record = ApiToken.lookup(token)
        if record is None:
            try:
                if token.count(".") == 2:  # a JWT, not one of ours
                    user = oidc.authenticate_jwt(token)
                elif not token.startswith("fctl_"):
                    user = oidc.authenticate_opaque(token)
                else:
                    user = None
            except oidc.OIDCError as exc:
                raise exceptions.AuthenticationFailed(str(exc))
            if user is None:
                raise exceptions.AuthenticationFailed("invalid token")
            return user, None
        if record.expires_at and record.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("token has expired")
        if not record.user.is_active:
            raise exceptions.AuthenticationFailed("user is disabled")
        return record.user, record

    def authenticate_header(self, request):
        return "Bearer"

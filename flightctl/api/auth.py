"""Bearer-token authentication for the user API: local tokens (``flightctl-server create-token``)
and, when an OIDC issuer is configured, that issuer's JWTs (flightctl/api/oidc.py)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from flightctl.api import oidc
from flightctl.models import ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>``; tokens are issued by ``flightctl-server create-token``."""

    keyword = "bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("invalid Authorization header: expected Bearer")
        record = ApiToken.lookup(token.strip())
        if record is None:
            if oidc.enabled() and token.strip().count(".") == 2:  # a JWT, not one of ours
                try:
                    return oidc.user_for(*oidc.verify(token.strip())), None
                except oidc.OIDCError as exc:
                    raise exceptions.AuthenticationFailed(str(exc))
            raise exceptions.AuthenticationFailed("invalid token")
        if record.expires_at and record.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("token has expired")
        if not record.user.is_active:
            raise exceptions.AuthenticationFailed("user is disabled")
        return record.user, record

    def authenticate_header(self, request):
        return "Bearer"

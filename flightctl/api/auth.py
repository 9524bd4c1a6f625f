"""Bearer-token authentication for the user API (local users of the embedded default)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

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
            raise exceptions.AuthenticationFailed("invalid token")
        if record.expires_at and record.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("token has expired")
        if not record.user.is_active:
            raise exceptions.AuthenticationFailed("user is disabled")
        return record.user, record

    def authenticate_header(self, request):
        return "Bearer"

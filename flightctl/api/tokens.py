"""``POST /api/v1/auth/{provider}/token``: the token endpoint of every login provider.

For an OIDC or OAuth2 provider it is the reference's token proxy: the server exchanges an
authorization code (with the client's PKCE ``code_verifier`` and ``redirect_uri``) or a refresh
token at the provider's token endpoint (an OIDC issuer's from its discovery document, an
OAuth2 provider's ``tokenUrl``), adding the client secret it keeps sealed, so command lines and
browsers never hold the secret. For ``local``, the bundled password issuer, it checks a local
user's password (``grant_type=password``) or one of its refresh tokens itself and issues a
bearer token of the user API. Either way the answer is a ``TokenResponse``; a refused request
is a 400 (401 for a wrong password) ``TokenResponse`` with ``error`` and
``error_description``, and after ``login_failure_limit`` failed passwords for one user name or
address in a window, 429.

The request is JSON or a form (``application/x-www-form-urlencoded``), as OAuth2 clients send.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from flightctl.api import oidc, providers, ratelimit
from flightctl.api.errors import not_found
from flightctl.config import parse_duration, parse_rate
from flightctl.models import ApiToken

log = logging.getLogger(__name__)
GRANTS = ("authorization_code", "refresh_token")
REFRESH_SALT = "flightctl.auth.local.refresh"
FIELDS = ("grant_type", "client_id", "code", "code_verifier", "redirect_uri", "refresh_token",
          "scope", "username", "password")


def token_error(code: int, error: str, description: str) -> Response:
    return Response({"error": error, "error_description": description}, status=code)


class TokenView(APIView):
    """Public, rate limited (flightctl/api/ratelimit.py): see the module docstring."""

    permission_classes = [AllowAny]
    authentication_classes = []
    parser_classes = [JSONParser, FormParser]

    def post(self, request, provider: str):
        data = request.data if hasattr(request.data, "get") else {}
        form = {key: data.get(key) for key in FIELDS
                if isinstance(data.get(key), str) and data.get(key)}
        if provider == providers.LOCAL_NAME and settings.FLIGHTCTL.password_login:
            return local_token(request, form)
        found = providers.named(provider)
        if found is None or found.name == providers.LOCAL_NAME:
            raise not_found("AuthProvider", provider)
        grant = form.get("grant_type")
        if grant not in GRANTS:
            return token_error(400, "unsupported_grant_type",
                               f"grant_type must be one of {', '.join(GRANTS)}")
        if form.get("client_id", found.client_id) != found.client_id:
            return token_error(400, "invalid_client",
                               f"client_id is not the client of provider {provider}")
        return proxy(found, grant, form)


def _token_endpoint(provider: providers.Provider) -> str:
    if provider.type == "oauth2":
        return provider.spec.get("tokenUrl") or ""
    return oidc.discovery(provider.issuer).get("token_endpoint") or ""


def proxy(provider: providers.Provider, grant: str, form: dict) -> Response:
    """The provider's answer to the exchange, as a TokenResponse."""
    keep = ("code", "code_verifier", "redirect_uri") if grant == "authorization_code" else (
        "refresh_token", "scope")
    upstream = {"grant_type": grant, "client_id": provider.client_id,
                **{key: form[key] for key in keep if key in form}}
    if provider.client_secret:
        upstream["client_secret"] = provider.client_secret
    try:
        endpoint = _token_endpoint(provider)
        if not endpoint:
            return token_error(400, "invalid_request",
                               f"provider {provider.name} has no token endpoint")
        response = requests.post(endpoint, data=upstream, timeout=15,
                                 headers={"Accept": "application/json"})
        body = response.json()
    except (requests.RequestException, ValueError, oidc.OIDCError) as exc:
        log.warning("auth provider %s: token endpoint failed: %s", provider.name, exc)
        return token_error(400, "temporarily_unavailable",
                           f"the token endpoint of provider {provider.name} failed: {exc}")
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200 or not body.get("access_token"):
        return token_error(400, str(body.get("error") or "invalid_grant"),
                           str(body.get("error_description")
                               or f"the provider answered {response.status_code}"))
    answer = {"access_token": body["access_token"], "token_type": "Bearer"}
    for key in ("id_token", "refresh_token", "expires_in"):
        if body.get(key) is not None:
            answer[key] = body[key]
    return Response(answer)


# -- the bundled password issuer ----------------------------------------------------------

def _issue(user) -> dict:
    config = settings.FLIGHTCTL
    lifetime = parse_duration(config.password_token_ttl)
    token = ApiToken.issue(user, "password login",
                           expires_at=timezone.now() + timedelta(seconds=lifetime))
    # The password's hash (through Django's session hash) is in it: a new password ends the
    # refresh tokens issued for the old one.
    refresh = signing.dumps({"user": user.pk, "name": user.get_username(),
                             "auth": user.get_session_auth_hash()}, salt=REFRESH_SALT)
    return {"access_token": token, "token_type": "Bearer", "expires_in": int(lifetime),
            "refresh_token": refresh}


def local_token(request, form: dict) -> Response:
    grant = form.get("grant_type")
    if grant == "refresh_token":
        try:
            claims = signing.loads(form.get("refresh_token", ""), salt=REFRESH_SALT,
                                   max_age=parse_duration(
                                       settings.FLIGHTCTL.password_refresh_token_ttl))
        except signing.BadSignature:
            return token_error(400, "invalid_grant", "the refresh token is not valid")
        user = get_user_model().objects.filter(pk=claims.get("user"), is_active=True,
                                               username=claims.get("name")).first()
        if user is None:
            return token_error(400, "invalid_grant", "the refresh token's user is gone")
        if not constant_time_compare(str(claims.get("auth", "")), user.get_session_auth_hash()):
            return token_error(400, "invalid_grant", "the password changed since this login")
        return Response(_issue(user))
    if grant != "password":
        return token_error(400, "unsupported_grant_type",
                           "grant_type must be password or refresh_token")
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return token_error(400, "invalid_request", "username and password are required")
    rate = parse_rate(settings.FLIGHTCTL.login_failure_limit)
    keys = [f"user:{username}", f"ip:{ratelimit.client_address(request._request)}"]
    if rate is not None:
        full, retry = ratelimit.over("login-failure", keys, rate)
        if full:
            return ratelimit.too_many(retry, "failed logins")
    user = authenticate(request._request, username=username, password=password)
    if user is None or not user.is_active:
        if rate is not None:
            ratelimit.hit("login-failure", keys, rate)
        log.info("password login refused for %r", username)
        return token_error(401, "invalid_grant", "invalid username or password")
    return Response(_issue(user))


class LocalDiscoveryView(APIView):
    """The password issuer's discovery document (what it supports, where its endpoints are)."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get(self, request):
        base = settings.FLIGHTCTL.user_api_url()
        issuer = f"{base}/api/v1/auth/{providers.LOCAL_NAME}"
        return Response({
            "issuer": issuer, "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{base}/api/v1/auth/userinfo",
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": [], "token_endpoint_auth_methods_supported": ["none"],
        })

"""Single sign-on: bearer tokens issued by an OpenID Connect provider (``oidc_issuer``).

With ``oidc_issuer`` set, a bearer token that is not one of our local tokens is taken for a JWT
from that issuer: its signature is checked against the issuer's published keys (found through
``<issuer>/.well-known/openid-configuration`` and cached), and so are ``iss``, ``aud``
(``oidc_client_id``) and the expiry. The user is the ``oidc_username_claim`` (default
``preferred_username``; its local mirror is named ``oidc:<name>``, apart from local users) and
its role comes from the ``oidc_roles_claim`` (default ``groups``; a
dotted path such as ``realm_access.roles`` reaches into nested claims): ``flightctl-admin``,
``flightctl-org-admin``, ``flightctl-operator``, ``flightctl-viewer``, ``flightctl-installer``,
the reference's role names (flightctl/api/rbac.py). The local user record mirrors the token's
role and is updated only when it changes.

``GET /auth/config`` then announces the provider the way the reference does (``providerType:
oidc``, a static organization, dynamic role assignment), so clients know where to log in;
``flightctl login URL --token <JWT>`` works with such a token as with a local one.
"""

from __future__ import annotations

import functools
import logging

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from flightctl.api.errors import API_VERSION
from flightctl.api.rbac import ROLES

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
PROVIDER_NAME = "oidc"
ROLE_PREFIX = "flightctl-"
USER_PREFIX = "oidc:"  # local mirrors of the issuer's users are named oidc:<user name>


class OIDCError(ValueError):
    """The token is not a valid token of the configured issuer; the message says why."""


def enabled() -> bool:
    return bool(settings.FLIGHTCTL.oidc_issuer)


@functools.lru_cache(maxsize=4)
def _jwks_client(issuer: str) -> jwt.PyJWKClient:
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        jwks_uri = response.json()["jwks_uri"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        _jwks_client.cache_clear()  # try the discovery again next time
        raise OIDCError(f"the OIDC issuer's discovery document is not usable: {exc}") from exc
    return jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=600)


def _claim(claims: dict, path: str):
    value = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def verify(token: str) -> tuple[str, str | None]:
    """``(username, role)`` of a valid token of the configured issuer; OIDCError otherwise."""
    return identity(decode(token))


def decode(token: str) -> dict:
    """The claims of a token of the configured issuer, its signature, issuer, audience and
    expiry checked; OIDCError otherwise."""
    config = settings.FLIGHTCTL
    try:
        key = _jwks_client(config.oidc_issuer).get_signing_key_from_jwt(token).key
        claims = jwt.decode(token, key, algorithms=ALGORITHMS, issuer=config.oidc_issuer,
                            audience=config.oidc_client_id or None,
                            options={"verify_aud": bool(config.oidc_client_id),
                                     "require": ["exp", "iss"]})
    except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
        raise OIDCError(f"invalid token: {exc}") from exc
    return claims


def identity(claims: dict) -> tuple[str, str | None]:
    """``(username, role)`` named by a verified token's claims (the configured claims)."""
    config = settings.FLIGHTCTL
    username = _claim(claims, config.oidc_username_claim)
    if not isinstance(username, str) or not username:
        raise OIDCError(f"the token has no {config.oidc_username_claim} claim")
    roles = _claim(claims, config.oidc_roles_claim) or []
    if isinstance(roles, str):
        roles = [roles]
    granted = [role for role in ROLES if f"{ROLE_PREFIX}{role}" in roles]
    return username, (granted[0] if granted else None)


def user_for(username: str, role: str | None):
    """The local user mirroring a token's identity and role (written only on a change)."""
    # Namespaced: an issuer's "admin" must never become (or demote) the local "admin".
    user, _ = get_user_model().objects.get_or_create(username=f"{USER_PREFIX}{username}")
    admin = role == "admin"
    wanted = {f"{ROLE_PREFIX}{role}"} if role and not admin else set()
    current = {g.name for g in user.groups.all() if g.name.startswith(ROLE_PREFIX)}
    if user.is_superuser != admin:
        user.is_superuser = admin
        user.save(update_fields=["is_superuser"])
    if current != wanted:
        user.groups.remove(*Group.objects.filter(name__in=[f"{ROLE_PREFIX}{r}" for r in ROLES]))
        if wanted:
            user.groups.add(Group.objects.get_or_create(name=wanted.pop())[0])
    return user


def provider() -> dict:
    """The configured issuer as an ``AuthProvider``, for ``GET /auth/config``."""
    config = settings.FLIGHTCTL
    return {
        "apiVersion": API_VERSION, "kind": "AuthProvider",
        "metadata": {"name": PROVIDER_NAME},
        "spec": {"providerType": "oidc", "displayName": "Single sign-on",
                 "issuer": config.oidc_issuer, "clientId": config.oidc_client_id,
                 "enabled": True, "scopes": ["openid", "profile", "email"],
                 "usernameClaim": config.oidc_username_claim.split("."),
                 "organizationAssignment": {"type": "static", "organizationName": "default"},
                 "roleAssignment": {"type": "dynamic",
                                    "claimPath": config.oidc_roles_claim.split(".")}},
    }

"""Bearer tokens of OpenID Connect issuers and OAuth2 servers (flightctl/api/providers.py).

A JWT names its issuer (``iss``) and audience (``aud``): the provider with that issuer and
client id is asked. Its signature is checked against the issuer's published keys (found
through ``<issuer>/.well-known/openid-configuration``, or an OAuth2 provider's
``introspection.jwksUrl``, and cached), and so are ``iss``, ``aud`` (the client id) and the
expiry. An opaque token (not a JWT, not one of ours) is checked at the ``userinfoUrl`` of the
OAuth2 providers (after their RFC 7662 ``introspection`` endpoint, if they have one), and
the answer is cached for ``auth_provider_cache_ttl`` (5 s), so a token revoked at the
provider is refused within that time. The claims then become a local user with roles and
organizations (flightctl/api/claims.py).

The configured issuer (``oidc_issuer``; ``oidc_username_claim``, ``oidc_roles_claim``) is the
provider named ``oidc``: its users are mirrored as ``oidc:<name>``, their roles come from the
roles claim, and they are members of the default organization.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time

import jwt
import requests
from django.conf import settings

from flightctl.api import claims as claim_mapping
from flightctl.api import providers
from flightctl.api.errors import API_VERSION
from flightctl.api.providers import Provider
from flightctl.config import parse_duration

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class OIDCError(ValueError):
    """The token is not a valid token of a trusted provider; the message says why."""


@functools.lru_cache(maxsize=64)
def discovery(issuer: str) -> dict:
    """An issuer's discovery document (cached; a failure is not)."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (requests.RequestException, ValueError) as exc:
        raise OIDCError(f"the OIDC issuer's discovery document is not usable: {exc}") from exc
    return document


@functools.lru_cache(maxsize=64)
def _jwks_client(jwks_uri: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=600)


def _jwks_uri(provider: Provider) -> str:
    introspection = provider.spec.get("introspection") or {}
    if provider.type == "oauth2" and introspection.get("type") == "jwt":
        return introspection.get("jwksUrl") or ""
    try:
        return discovery(provider.issuer)["jwks_uri"]
    except KeyError as exc:
        raise OIDCError("the OIDC issuer's discovery document names no jwks_uri") from exc


def decode_for(token: str, provider: Provider) -> dict:
    """The claims of a JWT of ``provider``: signature, issuer, audience and expiry checked."""
    introspection = provider.spec.get("introspection") or {}
    issuer = introspection.get("issuer") or provider.issuer or None
    audience = introspection.get("audience") or provider.client_id or None
    try:
        key = _jwks_client(_jwks_uri(provider)).get_signing_key_from_jwt(token).key
        return jwt.decode(token, key, algorithms=ALGORITHMS, issuer=issuer, audience=audience,
                          options={"verify_aud": bool(audience), "verify_iss": bool(issuer),
                                   "require": ["exp"]})
    except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
        raise OIDCError(f"invalid token: {exc}") from exc


def authenticate_jwt(token: str):
    """The local user of a provider's JWT; None when no provider issued it."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    provider = providers.for_token_claims(unverified.get("iss", ""), unverified.get("aud"))
    if provider is None:
        if any(p.name != providers.LOCAL_NAME for p in providers.enabled()):
            raise OIDCError(f"invalid token: Invalid issuer {unverified.get('iss')!r}: no "
                            "login provider has it")
        return None
    return _user(decode_for(token, provider), provider)


_userinfo: dict[str, tuple[float, str, dict]] = {}  # token digest -> (when, provider, claims)
_userinfo_lock = threading.Lock()


def authenticate_opaque(token: str):
    """The local user of an OAuth2 provider's opaque token, checked at its userinfo endpoint
    (and first at its RFC 7662 introspection endpoint when it names one); None when no
    provider knows it."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    candidates = {p.name: p for p in providers.opaque_token_providers()}
    with _userinfo_lock:
        seen = _userinfo.get(digest)
    ttl = parse_duration(settings.FLIGHTCTL.auth_provider_cache_ttl)
    if seen and time.monotonic() - seen[0] < ttl and seen[1] in candidates:
        return _user(seen[2], candidates[seen[1]])
    for provider in candidates.values():
        found = opaque_claims(provider, token)
        if found is not None:
            with _userinfo_lock:
                if len(_userinfo) > 10000:
                    _userinfo.clear()
                _userinfo[digest] = (time.monotonic(), provider.name, found)
            return _user(found, provider)
    return None


def _json_object(provider: Provider, what: str, send) -> dict | None:
    """The JSON object a provider's endpoint answers with 200; None otherwise (logged when
    the endpoint cannot be reached)."""
    try:
        response = send()
    except requests.RequestException as exc:
        log.warning("auth provider %s: %s unreachable: %s", provider.name, what, exc)
        return None
    if response.status_code != 200:
        return None
    try:
        found = response.json()
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def opaque_claims(provider: Provider, token: str) -> dict | None:
    """The claims of ``token`` if ``provider`` vouches for it. With ``introspection: {type:
    rfc7662, url}`` the token must be active there, and issued to our client id when the
    answer names one (the client authenticates as at the token endpoint, client_secret_post,
    RFC 7662 §2.1 leaving the method to the server); the claims
    are the introspection answer's, overlaid with the userinfo answer's (which carries the
    profile: groups, organizations)."""
    introspected: dict = {}
    introspection = provider.spec.get("introspection") or {}
    if introspection.get("type") == "rfc7662":
        answer = _json_object(provider, "introspection", lambda: requests.post(
            introspection["url"], timeout=10,
            data={"token": token, "token_type_hint": "access_token",
                  "client_id": provider.client_id, "client_secret": provider.client_secret}))
        if answer is None or answer.get("active") is not True:
            return None
        if answer.get("client_id") and answer["client_id"] != provider.client_id:
            return None
        introspected = answer
    found = _json_object(provider, "userinfo", lambda: requests.get(
        provider.spec["userinfoUrl"], timeout=10, headers={"Authorization": f"Bearer {token}"}))
    if found is None:
        return None
    return {**introspected, **found}


def _user(claims: dict, provider: Provider):
    try:
        who = claim_mapping.identity_for(claims, provider)
    except claim_mapping.ClaimsError as exc:
        raise OIDCError(str(exc)) from exc
    return claim_mapping.user_for(who, provider.name)


def represent(item: Provider) -> dict:
    """A provider as ``GET /auth/config`` lists it: no client secret."""
    spec = {key: value for key, value in item.spec.items() if key != "clientSecret"}
    return {"apiVersion": API_VERSION, "kind": "AuthProvider",
            "metadata": {"name": item.name}, "spec": spec}

"""The login providers the user API trusts: the one in the configuration (``oidc_issuer``),
the bundled password issuer (``local``, flightctl/api/password.py) and the AuthProvider
resources created through the API (flightctl/api/authproviders.py).

Every process reads the AuthProvider table through a cache: for ``auth_provider_cache_ttl``
(5 s) it answers from memory; after that one cheap aggregate (count, highest id, sum of
``resourceVersion``, latest update) tells whether anything changed, and only then are the rows
read again. So a provider created, changed, disabled or deleted through any server process
takes effect in all of them within that time, without a restart, and a deleted provider's
tokens are refused from then on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Count, Max, Sum

from flightctl import sealing
from flightctl.config import parse_duration
from flightctl.models import DEFAULT_ORG_ID, AuthProvider

STATIC_NAME = "oidc"  # the configured issuer, as /auth/config has always named it
LOCAL_NAME = "local"  # the bundled password issuer
PURPOSE = b"flightctl-authprovider"
MAX_PROVIDERS = 1000
#: where the server sends a provider's client secret or users' tokens (an issuer: its token
#: endpoint, found through its discovery document)
SECRET_DESTINATIONS = ("issuer", "tokenUrl", "userinfoUrl", "introspection.url")

log = logging.getLogger(__name__)
#: set on an AuthProvider a super administrator wrote (flightctl/api/authproviders.py)
SUPER_ADMIN_ANNOTATION = "auth-provider/createdBySuperAdmin"


@dataclass(frozen=True)
class Provider:
    """One login provider with its spec (client secret in clear text, for the token proxy)."""

    name: str
    spec: dict
    static: bool = False
    org_id: uuid.UUID = DEFAULT_ORG_ID
    #: configured, or written by a super administrator. An organization administrator's
    #: provider is not: its users are confined to its organization and never super
    #: administrators (flightctl/api/claims.py), and it is shown no opaque tokens.
    trusted: bool = True

    @property
    def type(self) -> str:
        return self.spec.get("providerType", "")

    @property
    def issuer(self) -> str:
        return (self.spec.get("issuer") or "").rstrip("/")

    @property
    def client_id(self) -> str:
        return self.spec.get("clientId") or ""

    @property
    def client_secret(self) -> str:
        return self.spec.get("clientSecret") or ""

    @property
    def enabled(self) -> bool:
        return self.spec.get("enabled", True) is not False

    @property
    def username_claim(self) -> list[str]:
        return list(self.spec.get("usernameClaim") or ["preferred_username"])


def configured() -> list[Provider]:
    """The providers of the configuration (no database involved)."""
    config = settings.FLIGHTCTL
    found = []
    if config.oidc_issuer:
        found.append(Provider(STATIC_NAME, {
            "providerType": "oidc", "displayName": "Single sign-on",
            "issuer": config.oidc_issuer, "clientId": config.oidc_client_id,
            "clientSecret": config.oidc_client_secret, "enabled": True,
            "scopes": ["openid", "profile", "email"],
            "usernameClaim": config.oidc_username_claim.split("."),
            "organizationAssignment": {"type": "static", "organizationName": "default"},
            "roleAssignment": {"type": "dynamic",
                               "claimPath": config.oidc_roles_claim.split(".")}},
            static=True))
    if config.password_login:
        base = config.user_api_url()
        found.append(Provider(LOCAL_NAME, {
            "providerType": "oidc", "displayName": "Local users (password)",
            "issuer": f"{base}/api/v1/auth/{LOCAL_NAME}", "clientId": "flightctl",
            "enabled": True, "scopes": ["openid"], "usernameClaim": ["preferred_username"],
            "organizationAssignment": {"type": "static", "organizationName": "default"},
            "roleAssignment": {"type": "static", "roles": []}},
            static=True))
    return found


class _Cache:
    def __init__(self):
        self.lock = threading.Lock()
        self.checked = 0.0
        self.version = None
        self.providers: list[Provider] = []

    def clear(self) -> None:
        with self.lock:
            self.checked, self.version = 0.0, None


_cache = _Cache()


def _version():
    row = AuthProvider.objects.aggregate(n=Count("id"), top=Max("id"),
                                         rv=Sum("resource_version"), at=Max("updated_at"))
    return (row["n"], row["top"], row["rv"], row["at"])


def destinations(spec: dict) -> dict[str, str]:
    """The URLs of ``spec`` that receive its client secret or users' tokens."""
    introspection = spec.get("introspection")
    values = {**spec, "introspection.url": introspection.get("url")
              if isinstance(introspection, dict) else None}
    return {key: values[key] for key in SECRET_DESTINATIONS
            if isinstance(values.get(key), str) and values[key]}


def plain_http_destination(spec: dict) -> tuple[str, str, str] | None:
    """``(field, url, host)`` of a destination that is plain http:// to a host not in
    ``plain_http_credential_hosts`` (loopback by default; the repositories' rule), or None:
    secrets and tokens never cross the network in clear."""
    allowed = {h.strip("[]").lower() for h in settings.FLIGHTCTL.plain_http_credential_hosts}
    for key, url in destinations(spec).items():
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            continue  # not a URL: validation says so
        if parts.scheme.lower() == "http" and host not in allowed:
            return key, url, host
    return None


def _load() -> list[Provider]:
    rows = AuthProvider.objects.order_by("name", "org_id")[:MAX_PROVIDERS]
    found = []
    for row in rows:
        spec = dict(row.spec or {})
        if spec.get("clientSecret"):
            try:
                spec["clientSecret"] = sealing.decrypt(spec["clientSecret"], PURPOSE)
            except sealing.SecretError:
                spec["clientSecret"] = ""  # the token proxy will say the provider refused
        problem = plain_http_destination(spec)
        if problem:  # stored before the rule, or the setting changed since: not used
            log.warning("auth provider %s not used: spec.%s is plain http to %s",
                        row.name, problem[0], problem[2])
            continue
        trusted = (row.annotations or {}).get(SUPER_ADMIN_ANNOTATION) == "true"
        found.append(Provider(row.name, spec, org_id=row.org_id, trusted=trusted))
    return found


def dynamic() -> list[Provider]:
    """The AuthProvider resources (enabled or not), at most ``auth_provider_cache_ttl`` old."""
    ttl = parse_duration(settings.FLIGHTCTL.auth_provider_cache_ttl)
    now = time.monotonic()
    with _cache.lock:
        if _cache.version is not None and now - _cache.checked < ttl:
            return _cache.providers
        version = _version()
        if version != _cache.version:
            _cache.providers = _load()
            _cache.version = version
        _cache.checked = now
        return _cache.providers


def invalidate() -> None:
    """Forget the cache (this process wrote the table: its own writes show at once)."""
    _cache.clear()


def enabled() -> list[Provider]:
    """Every provider a user may log in with: configured ones first."""
    return [p for p in configured() + dynamic() if p.enabled]


def named(name: str) -> Provider | None:
    return next((p for p in enabled() if p.name == name), None)


def for_token_claims(issuer: str, audience) -> Provider | None:
    """The provider that issued a JWT with these (unverified) ``iss`` and ``aud``."""
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    issuer = (issuer or "").rstrip("/")
    candidates = [p for p in enabled() if p.name != LOCAL_NAME and p.issuer == issuer]
    for provider in candidates:
        if not provider.client_id or provider.client_id in audiences:
            return provider
    return candidates[0] if candidates else None


def opaque_token_providers() -> list[Provider]:
    """OAuth2 providers whose opaque tokens are checked at their userinfo endpoint.

    An opaque token does not say where it comes from, so it is shown to each of these in turn:
    only trusted providers are asked, or an organization administrator's provider would be
    handed every other tenant's (and every super administrator's) tokens. Theirs must issue
    JWT access tokens (``introspection: {type: jwt}``)."""
    return [p for p in dynamic() if p.enabled and p.trusted and p.type == "oauth2"
            and p.spec.get("userinfoUrl")]

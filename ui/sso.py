"""Single sign-on in the browser: the OAuth2 authorization code flow with PKCE, through any
enabled OIDC or OAuth2 login provider (the configured issuer and the AuthProvider resources,
flightctl/api/providers.py).

The login page offers each of them; ``/admin/sso/login?provider=NAME`` sends the browser to
that issuer with a fresh ``state``, ``nonce`` and PKCE challenge (kept in the session with the
provider's name), and the issuer sends it back to ``/admin/sso/callback`` with a code. The code
is exchanged at the issuer's token endpoint (with the provider's client secret, if it has one)
for an ID token, which is checked exactly as the API checks that provider's bearer tokens
(flightctl/api/oidc.py: signature, issuer, audience, expiry) and must carry our nonce; an
OAuth2 provider's access token is checked as the API checks it (its keys, or its userinfo and
introspection endpoints). The
user, its roles and its organizations come from the claims as for the API
(flightctl/api/claims.py); the console then works in the user's organization.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from urllib.parse import urlencode

import requests
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from flightctl.api import claims as claim_mapping
from flightctl.api import oidc, providers

log = logging.getLogger(__name__)
SESSION_KEY = "flightctl_sso"


def _browser_providers() -> list[providers.Provider]:
    return [p for p in providers.enabled()
            if p.type in ("oidc", "oauth2") and p.name != providers.LOCAL_NAME]


def _endpoints(idp: providers.Provider) -> tuple[str, str]:
    """The authorization and token endpoints: an OAuth2 provider names them, an issuer's
    discovery document does."""
    if idp.type == "oauth2":
        return idp.spec.get("authorizationUrl") or "", idp.spec.get("tokenUrl") or ""
    document = oidc.discovery(idp.issuer)
    return document["authorization_endpoint"], document["token_endpoint"]


def _claims(idp: providers.Provider, body: dict, nonce: str) -> dict:
    """The verified claims of the token endpoint's answer. OIDC: the ID token, checked as the
    API checks the provider's tokens, with our nonce. OAuth2: the access token, a JWT checked
    against the provider's keys (``introspection: jwt``) or an opaque one at its userinfo
    (and introspection) endpoint; it came straight from this provider, so it is shown to no
    other."""
    if idp.type == "oauth2":
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise oidc.OIDCError("the token endpoint gave no access token")
        if (idp.spec.get("introspection") or {}).get("type") == "jwt":
            return oidc.decode_for(token, idp)
        found = oidc.opaque_claims(idp, token)
        if found is None:
            raise oidc.OIDCError("the provider does not vouch for its own access token")
        return found
    if "id_token" not in body:
        raise oidc.OIDCError("the token endpoint gave no ID token")
    claims = oidc.decode_for(body["id_token"], idp)
    if claims.get("nonce") != nonce:
        raise oidc.OIDCError("the ID token was not issued for this login")
    return claims


def offered() -> list[dict]:
    """The identity providers the login page offers (none: local users only)."""
    return [{"name": p.name, "displayName": p.spec.get("displayName") or p.name}
            for p in _browser_providers()]


def provider(name: str | None = None) -> providers.Provider | None:
    """The provider called ``name`` (default: the first one offered), or None."""
    found = _browser_providers()
    if name:
        return next((p for p in found if p.name == name), None)
    return found[0] if found else None


def _callback_url(request) -> str:
    return request.build_absolute_uri(reverse("admin:ui-sso-callback"))


def _failed(request, message: str):
    messages.error(request, f"Single sign-on failed: {message}")
    return redirect("admin:login")


def start(request):
    """Send the browser to the provider's authorization endpoint."""
    idp = provider(request.GET.get("provider"))
    if idp is None:
        raise Http404("no such single sign-on provider")
    try:
        endpoint = _endpoints(idp)[0]
    except (oidc.OIDCError, KeyError) as exc:
        oidc.discovery.cache_clear()
        return _failed(request, f"the issuer {idp.issuer} cannot be reached ({exc})")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    wanted = request.GET.get("next", "")
    request.session[SESSION_KEY] = {
        "provider": idp.name,
        "state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
        "verifier": verifier,
        "next": wanted if url_has_allowed_host_and_scheme(
            wanted, {request.get_host()}, require_https=request.is_secure()) else ""}
    pending = request.session[SESSION_KEY]
    scopes = " ".join(idp.spec.get("scopes") or ["openid", "profile", "email"])
    return redirect(endpoint + "?" + urlencode({
        "response_type": "code", "client_id": idp.client_id,
        "redirect_uri": _callback_url(request), "scope": scopes,
        "state": pending["state"], "nonce": pending["nonce"],
        "code_challenge": challenge.decode(), "code_challenge_method": "S256"}))


def callback(request):
    """Take the issuer's answer: exchange the code, check the ID token, log the user in."""
    pending = request.session.pop(SESSION_KEY, None)
    if pending is None or request.GET.get("state") != pending["state"]:
        return _failed(request, "the answer does not belong to a login started here")
    idp = provider(pending.get("provider"))
    if idp is None:
        return _failed(request, f"the provider {pending.get('provider')} is gone")
    if request.GET.get("error"):
        return _failed(request, request.GET.get("error_description") or request.GET["error"])
    form = {"grant_type": "authorization_code", "code": request.GET.get("code", ""),
            "redirect_uri": _callback_url(request), "client_id": idp.client_id,
            "code_verifier": pending["verifier"]}
    if idp.client_secret:
        form["client_secret"] = idp.client_secret
    try:
        response = requests.post(_endpoints(idp)[1], data=form, timeout=10)
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("the token endpoint's answer is not a JSON object")
        if response.status_code != 200:
            return _failed(request, body.get("error_description") or body.get("error")
                           or f"the token endpoint answered {response.status_code}")
        who = claim_mapping.identity_for(_claims(idp, body, pending["nonce"]), idp)
    except (requests.RequestException, ValueError, KeyError, oidc.OIDCError) as exc:
        return _failed(request, str(exc))
    if not (who.superadmin or who.roles or any(who.org_roles.values())):
        return _failed(request, f'"{who.username}" has no Flight Control role at the issuer')
    user = claim_mapping.user_for(who, idp.name)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    log.info("single sign-on: %s logged in through %s", user.get_username(), idp.name)
    return redirect(pending["next"] or "admin:index")

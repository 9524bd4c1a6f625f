"""Single sign-on in the browser: OpenID Connect's authorization code flow with PKCE.

The login page offers the configured issuer; ``/admin/sso/login`` sends the browser there with
a fresh ``state``, ``nonce`` and PKCE challenge (kept in the session), and the issuer sends it
back to ``/admin/sso/callback`` with a code. The code is exchanged at the issuer's token endpoint
for an ID token, which is checked exactly as the API checks the issuer's bearer tokens
(flightctl/api/oidc.py: signature, issuer, audience, expiry; the user and the role from the
configured claims) and must carry our nonce. The user then has a console session like a local
user's, mirrored as ``oidc:<name>`` with the token's role.

:func:`provider` is the one place the console looks its identity provider up, so that
AuthProvider resources can later take the place of the single configured issuer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import secrets
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from flightctl.api import oidc

log = logging.getLogger(__name__)
SESSION_KEY = "flightctl_sso"


def provider() -> dict | None:
    """The identity provider the login page offers, or None (local users only)."""
    config = settings.FLIGHTCTL
    if not config.oidc_issuer:
        return None
    return {"name": oidc.PROVIDER_NAME, "displayName": "Single sign-on",
            "issuer": config.oidc_issuer.rstrip("/"), "clientId": config.oidc_client_id,
            "clientSecret": config.oidc_client_secret}


@functools.lru_cache(maxsize=4)
def _endpoints(issuer: str) -> dict:
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
    response.raise_for_status()
    document = response.json()
    return {key: document[key] for key in ("authorization_endpoint", "token_endpoint")}


def _callback_url(request) -> str:
    return request.build_absolute_uri(reverse("admin:ui-sso-callback"))


def _failed(request, message: str):
    messages.error(request, f"Single sign-on failed: {message}")
    return redirect("admin:login")


def start(request):
    """Send the browser to the issuer's authorization endpoint."""
    idp = provider()
    if idp is None:
        raise Http404("single sign-on is not configured")
    try:
        endpoints = _endpoints(idp["issuer"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        _endpoints.cache_clear()
        return _failed(request, f"the issuer {idp['issuer']} cannot be reached ({exc})")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    wanted = request.GET.get("next", "")
    request.session[SESSION_KEY] = {
        "state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
        "verifier": verifier,
        "next": wanted if url_has_allowed_host_and_scheme(
            wanted, {request.get_host()}, require_https=request.is_secure()) else ""}
    pending = request.session[SESSION_KEY]
    return redirect(endpoints["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code", "client_id": idp["clientId"],
        "redirect_uri": _callback_url(request), "scope": "openid profile email",
        "state": pending["state"], "nonce": pending["nonce"],
        "code_challenge": challenge.decode(), "code_challenge_method": "S256"}))


def callback(request):
    """Take the issuer's answer: exchange the code, check the ID token, log the user in."""
    idp = provider()
    pending = request.session.pop(SESSION_KEY, None)
    if idp is None:
        raise Http404("single sign-on is not configured")
    if pending is None or request.GET.get("state") != pending["state"]:
        return _failed(request, "the answer does not belong to a login started here")
    if request.GET.get("error"):
        return _failed(request, request.GET.get("error_description") or request.GET["error"])
    form = {"grant_type": "authorization_code", "code": request.GET.get("code", ""),
            "redirect_uri": _callback_url(request), "client_id": idp["clientId"],
            "code_verifier": pending["verifier"]}
    if idp["clientSecret"]:
        form["client_secret"] = idp["clientSecret"]
    try:
        response = requests.post(_endpoints(idp["issuer"])["token_endpoint"], data=form,
                                 timeout=10)
        body = response.json()
        if response.status_code != 200 or "id_token" not in body:
            return _failed(request, body.get("error_description") or body.get("error")
                           or f"the token endpoint answered {response.status_code}")
        claims = oidc.decode(body["id_token"])
        if claims.get("nonce") != pending["nonce"]:
            return _failed(request, "the ID token was not issued for this login")
        username, role = oidc.identity(claims)
    except (requests.RequestException, ValueError, KeyError) as exc:
        return _failed(request, str(exc))
    if role is None:
        return _failed(request, f'"{username}" has no Flight Control role at the issuer')
    user = oidc.user_for(username, role)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    log.info("single sign-on: %s logged in as %s", user.get_username(), role)
    return redirect(pending["next"] or "admin:index")

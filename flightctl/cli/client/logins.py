"""Logging in through a provider: the browser flow (OAuth2 authorization code with PKCE and a
loopback callback), passwords against the server's password issuer, and token refresh.

Every exchange goes through the server's token endpoint (``POST /auth/<provider>/token``), which
holds the client secret; the command line only ever sees the provider's authorization endpoint
(an OIDC issuer's from its discovery document, an OAuth2 provider's ``authorizationUrl``).
The bearer token kept is an OIDC provider's ID token (a JWT the server verifies) or else the
access token, with the refresh token and the expiry, so later commands refresh it shortly
before it runs out, or once after a 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import webbrowser
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import click
import requests

from flightctl.cli.client.config import ClientConfig
from flightctl.cli.client.errors import CliError

CALLBACK_PATH = "/callback"
CALLBACK_TIMEOUT = 300.0
REFRESH_MARGIN = 30  # seconds before the expiry a token is refreshed
DEFAULT_SCOPES = ["openid", "profile", "email"]


def pick_provider(providers: list, wanted: str | None, default: str, *, browser: bool) -> dict:
    """The provider to log in with: ``--provider``, else the server's default, else the only
    one that fits the kind of login."""
    by_name = {p.get("metadata", {}).get("name"): p for p in providers}
    if wanted:
        if wanted not in by_name:
            raise CliError(f'the server has no login provider "{wanted}" (see flightctl login '
                           "--show-providers)")
        return by_name[wanted]
    fitting = [p for p in providers if (p.get("metadata", {}).get("name") == "local")
               != browser]
    if default in by_name and by_name[default] in fitting:
        return by_name[default]
    if len(fitting) == 1:
        return fitting[0]
    names = ", ".join(str(p.get("metadata", {}).get("name")) for p in fitting) or "none"
    raise CliError(f"name the login provider with --provider ({names})")


def authorization_endpoint(spec: dict, verify) -> str:
    if spec.get("providerType") == "oauth2":
        return spec.get("authorizationUrl") or ""
    issuer = (spec.get("issuer") or "").rstrip("/")
    try:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=15,
                                verify=verify)
        response.raise_for_status()
        return response.json()["authorization_endpoint"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise CliError(f"the provider's issuer {issuer} cannot be asked where to log in: "
                       f"{exc}") from None


class _Callback(BaseHTTPRequestHandler):
    answer: dict | None = None

    def do_GET(self):  # noqa: N802 - the http.server interface
        url = urlparse(self.path)
        if url.path != CALLBACK_PATH:
            self.send_error(404)
            return
        type(self).answer = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = b"Login complete: you may close this window and return to flightctl.\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # the terminal is the user's, not a log
        pass


def browser_login(client, provider: dict, *, port: int, open_browser: bool,
                  auth_verify) -> dict:
    """The TokenResponse of an authorization-code login through the user's browser."""
    name = provider["metadata"]["name"]
    spec = provider.get("spec") or {}
    endpoint = authorization_endpoint(spec, auth_verify)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    state = secrets.token_urlsafe(24)
    redirect_uri = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    handler = type("Callback", (_Callback,), {"answer": None})
    try:
        server = HTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise CliError(f"cannot listen for the login callback on 127.0.0.1:{port} "
                       f"({exc.strerror}): pick another --callback-port") from None
    url = endpoint + ("&" if "?" in endpoint else "?") + urlencode({
        "response_type": "code", "client_id": spec.get("clientId", ""),
        "redirect_uri": redirect_uri, "scope": " ".join(spec.get("scopes") or DEFAULT_SCOPES),
        "state": state, "code_challenge": challenge, "code_challenge_method": "S256"})
    click.echo(f"Open this URL in a browser to log in:\n{url}", err=False)
    if open_browser:
        webbrowser.open(url)
    thread = threading.Thread(target=_serve_until_answered, args=(server, handler),
                              daemon=True)
    thread.start()
    thread.join(CALLBACK_TIMEOUT)
    server.server_close()
    answer = handler.answer
    if answer is None:
        raise CliError(f"no login arrived within {CALLBACK_TIMEOUT:g}s")
    if answer.get("state") != state:
        raise CliError("the login callback does not belong to this login (state mismatch)")
    if answer.get("error"):
        raise CliError(f"the provider refused the login: "
                       f"{answer.get('error_description') or answer['error']}")
    return client.send_json("POST", f"auth/{name}/token", {
        "grant_type": "authorization_code", "client_id": spec.get("clientId", ""),
        "code": answer.get("code", ""), "code_verifier": verifier,
        "redirect_uri": redirect_uri}, auth=False)


def _serve_until_answered(server: HTTPServer, handler) -> None:
    deadline = time.monotonic() + CALLBACK_TIMEOUT
    server.timeout = 1
    while handler.answer is None and time.monotonic() < deadline:
        server.handle_request()


def password_login(client, provider: dict, username: str, password: str) -> dict:
    name = provider["metadata"]["name"]
    return client.send_json("POST", f"auth/{name}/token", {
        "grant_type": "password", "client_id": (provider.get("spec") or {}).get("clientId", ""),
        "username": username, "password": password}, auth=False)


def _jwt_expiry(token: str) -> int | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def keep_tokens(config: ClientConfig, answer: dict, provider: dict) -> None:
    """Store a TokenResponse in the config: the bearer token, refresh token and expiry."""
    if not isinstance(answer, dict) or not (answer.get("id_token") or answer.get("access_token")):
        raise CliError("the server's token endpoint returned no token")
    spec = provider.get("spec") or {}
    use_id_token = spec.get("providerType") == "oidc" and answer.get("id_token")
    config.token = answer["id_token"] if use_id_token else answer["access_token"]
    config.refresh_token = answer.get("refresh_token") or ""
    expiry = _jwt_expiry(config.token) if use_id_token else None
    if expiry is None and answer.get("expires_in"):
        expiry = int(time.time() + float(answer["expires_in"]))
    config.token_expiry = (datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                           if expiry else "")
    config.auth_provider = {"name": provider["metadata"]["name"],
                            "client-id": spec.get("clientId", ""),
                            "type": spec.get("providerType", "")}


def needs_refresh(config: ClientConfig) -> bool:
    if not (config.refresh_token and config.token_expiry and config.auth_provider):
        return False
    try:
        expiry = datetime.strptime(config.token_expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return True
    return expiry - timedelta(seconds=REFRESH_MARGIN) <= datetime.now(UTC)


def refresh(client, config: ClientConfig) -> None:
    """Trade the refresh token for a new token and save the config."""
    from flightctl.cli.client import config as client_config

    name = config.auth_provider.get("name", "")
    answer = client.send_json("POST", f"auth/{name}/token", {
        "grant_type": "refresh_token", "client_id": config.auth_provider.get("client-id", ""),
        "refresh_token": config.refresh_token}, auth=False)
    previous = config.refresh_token
    keep_tokens(config, answer, {"metadata": {"name": name}, "spec": {
        "providerType": config.auth_provider.get("type", ""),
        "clientId": config.auth_provider.get("client-id", "")}})
    # A provider that does not rotate refresh tokens leaves the old one valid.
    config.refresh_token = config.refresh_token or previous
    client_config.save(config)

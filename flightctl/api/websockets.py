"""WebSocket routes of the user API (``/ws/v1/...``), answered in ASGI ahead of Django.

Django's request cycle is WSGI here (flightctl.asgi); a WebSocket lives as long as its
session, so its routes are coroutines registered by the apps that own them
(:func:`websocket_route`) and given a :class:`WebSocket` once the caller is known. The gate is
the REST API's, applied before anything else: version negotiation, a bearer token (local or
OIDC, flightctl/api/auth.py) or the web UI's session cookie (same-origin requests only), the
organization (``org_id``) and the route's RBAC resource with verb ``get``. A refusal is the
usual ``Status`` body with its HTTP code, sent instead of the upgrade (the ASGI WebSocket
denial response). A browser cannot read that response (its WebSocket API reports a refused
upgrade as a bare close 1006), so a request of the web UI's own pages (its session cookie,
same origin, no bearer token) is refused after the upgrade instead: accepted, then closed
with code ``4000 + status`` and the message as the close reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import import_module
from urllib.parse import parse_qs, urlsplit

from django.conf import settings

from flightctl.api import rbac
from flightctl.api.auth import BearerTokenAuthentication
from flightctl.api.errors import ApiError, status_body
from flightctl.api.middleware import SUPPORTED_VERSIONS
from flightctl.api.orgs import resolve_org, roles_in
from flightctl.threads import in_thread

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]
_ROUTES: list[tuple[re.Pattern, str, Handler]] = []
HARDENING = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def websocket_route(pattern: str, resource: str):
    """Register ``handler(socket, **path_params)`` for WebSockets whose path matches
    ``pattern`` (a regex with named groups), guarded by RBAC ``resource``/``get``."""

    def register(handler: Handler) -> Handler:
        _ROUTES.append((re.compile(pattern), resource, handler))
        return handler

    return register


class _Request:
    """What the REST API's authentication and organization lookup read of a request."""

    def __init__(self, scope):
        self.META = {}
        for key, value in scope.get("headers") or ():
            name = "HTTP_" + key.decode("latin-1").upper().replace("-", "_")
            self.META[name] = value.decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        self.query_params = {key: values[-1] for key, values in query.items()}
        self.session = None


def _session_key(meta: dict) -> str | None:
    cookies = {}
    for part in meta.get("HTTP_COOKIE", "").split(";"):
        key, _, value = part.strip().partition("=")
        cookies[key] = value
    return cookies.get(settings.SESSION_COOKIE_NAME) or None


def _same_origin(meta: dict) -> bool:
    return urlsplit(meta.get("HTTP_ORIGIN", "")).netloc == meta.get("HTTP_HOST")


def from_web_ui(scope) -> bool:
    """A request of the web UI's own pages: its session cookie, from its own origin, no
    bearer token. Its refusals are close codes (see the module docstring)."""
    meta = _Request(scope).META
    return (_session_key(meta) is not None and _same_origin(meta)
            and "HTTP_AUTHORIZATION" not in meta)


def _session_user(request: _Request):
    """The web UI's logged-in user, for a same-origin request carrying the session cookie."""
    from django.contrib.auth import get_user

    key = _session_key(request.META)
    if not key:
        return None
    if not _same_origin(request.META):
        # A cookie is sent by any page the browser shows: only the UI's own pages may use it
        # (no cross-site WebSocket hijacking). Browsers always send Origin on a WebSocket.
        raise ApiError(403, "cross-origin WebSocket refused")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    user = get_user(request)
    return user if user.is_authenticated else None


def authorize(scope, resource: str):
    """``(user, org_id)`` of a WebSocket request allowed ``resource``/``get`` (ApiError
    otherwise). Synchronous: the ORM."""
    from rest_framework.exceptions import AuthenticationFailed

    request = _Request(scope)
    requested = request.META.get("HTTP_FLIGHTCTL_API_VERSION", "").strip()
    if requested and requested not in SUPPORTED_VERSIONS:
        raise ApiError(406, "Requested API version is not supported for this endpoint. "
                            f"Supported versions: {', '.join(SUPPORTED_VERSIONS)}")
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        raise ApiError(401, str(exc.detail))
    user = found[0] if found else _session_user(request)
    if user is None:
        raise ApiError(401, "Authentication credentials were not provided.")
    org_id = resolve_org(request, user)
    if not rbac.allowed(roles_in(user, org_id), resource, "get"):
        raise ApiError(403, f'user "{user.get_username()}" may not get {resource}')
    return user, org_id


class WebSocket:
    """One WebSocket request of the user API, past the gate."""

    def __init__(self, scope, receive, send, user, org_id, browser: bool = False):
        self.scope, self._receive, self._send = scope, receive, send
        self.user, self.org_id = user, org_id
        self.browser = browser
        self.accepted = False

    @property
    def subprotocols(self) -> list[str]:
        return list(self.scope.get("subprotocols") or [])

    def query(self, name: str) -> str:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[-1] if values else ""

    def in_thread(self, function, *args):
        """Run synchronous (ORM) code off the event loop."""
        return in_thread(function, *args)

    async def deny(self, code: int, message: str) -> None:
        """Answer the upgrade request with ``code`` and a ``Status`` body instead; a client
        that has gone meanwhile (uvicorn's ClientDisconnected, an OSError) gets nothing."""
        try:
            await deny(self.scope, self._send, code, message, browser=self.browser)
        except OSError:
            log.info("WebSocket %s: the client left before its %d", self.scope["path"], code)

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._send(_accept(subprotocol))
        self.accepted = True

    async def receive(self) -> bytes | str | None:
        """The next message (bytes or text); None once the client has gone."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("bytes") is not None:
            return message["bytes"]
        return message.get("text") or ""

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._send({"type": "websocket.close", "code": code,
                              "reason": close_reason(reason)})
        except Exception:  # noqa: BLE001 - the client may already be gone
            pass


def _accept(subprotocol: str | None) -> dict:
    return {"type": "websocket.accept", "subprotocol": subprotocol,
            "headers": [(k.encode(), v.encode()) for k, v in HARDENING.items()]}


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame carries (123 bytes of UTF-8)."""
    return text.encode()[:123].decode(errors="ignore")


async def deny(scope, send, code: int, message: str, *, browser: bool = False) -> None:
    """Refuse the upgrade with ``code`` and ``message`` (a ``Status`` body, or a close code
    for a browser or a server without the HTTP-response extension); every refusal is logged
    here, whichever route or check made it."""
    log.info("WebSocket %s refused: %d %s", scope["path"], code, message)
    if browser:
        offered = scope.get("subprotocols") or []
        await send(_accept(offered[0] if offered else None))
        await send({"type": "websocket.close", "code": 4000 + code,
                    "reason": close_reason(message)})
        return
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": close_reason(message)})
        return
    body = json.dumps(status_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               *[(k.encode(), v.encode()) for k, v in HARDENING.items()]]
    await send({"type": "websocket.http.response.start", "status": code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class UserApplication:
    """The user API's ASGI application: registered WebSocket routes, and ``http`` to
    ``django`` (the WSGI application behind a thread pool)."""

    def __init__(self, django):
        self.django = django

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self.django(scope, receive, send)
        # lifespan: nothing to start or stop

    async def _websocket(self, scope, receive, send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        browser = from_web_ui(scope)
        found = next(((route, match) for route in _ROUTES
                      if (match := route[0].fullmatch(scope["path"]))), None)
        if found is None:
            await deny(scope, send, 404, f"no WebSocket at {scope['path']}", browser=browser)
            return
        (_pattern, resource, handler), match = found
        try:
            user, org_id = await in_thread(authorize, scope, resource)
        except ApiError as exc:
            await deny(scope, send, exc.status_code, exc.message, browser=browser)
            return
        socket = WebSocket(scope, receive, send, user, org_id, browser)
        try:
            await handler(socket, **match.groupdict())
        except Exception:
            log.exception("WebSocket %s failed", scope["path"])
            if socket.accepted:
                await socket.close(1011, "internal error")
            else:
                await socket.deny(500, "internal error")

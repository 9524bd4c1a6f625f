"""The two operations every device calls all the time, answered in ASGI ahead of Django:
the ``GET /api/v1/devices/{name}/rendered`` long-poll and ``PUT .../status``.

Every connected device keeps a long-poll open (up to ``rendered_wait_timeout``, 2 minutes) and
reports its status every minute. Through Django each waiting request kept Django's request,
handler tasks and middleware state alive for those two minutes: about two hundred Python
objects per device, promoted to the oldest GC generation while they waited and left there as
cyclic garbage when they ended; and each status PUT cost a new thread (Django runs a sync view
in a thread of its own per request), a disconnect-watching task that is then cancelled, and
the request signals. At 3,500 devices CPython's full collections, which stop the whole
process, ran every ~10 s per process and lasted 0.5–1.2 s: they were the whole status-PUT tail
(docs/scale.md). Here a waiting long-poll is its scope, one coroutine, one future in the
render listener and one timer; a status PUT runs in the event loop's small thread pool.

The contract is the Django views', unchanged: the same version negotiation and client
certificate checks, the same validation and storage (:func:`views.store_status`), errors as
``Status``, the same headers (shared with :mod:`agent_api.middleware`). An enrolling
device's two calls (its request and its poll for the certificate) are answered here too,
inside the admission gate (:mod:`agent_api.admission`). Everything else, including a status
PATCH and the TPM challenge, goes to Django.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from urllib.parse import parse_qs

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from agent_api import db as agent_db
from agent_api.admission import ENROLLMENT_PREFIX, admission
from agent_api.listener import DRAIN, listener
from agent_api.middleware import authenticate, response_headers
from agent_api.views import (
    create_enrollment_request,
    org_of,
    parse_json,
    read_enrollment_request,
    require_device,
    store_status,
)
from devices.api.serializers import load_rendered_body
from devices.restore import reconnect
from devices.services import last_seen_buffer, touch_last_seen
from flightctl.api import outage
from flightctl.api.errors import ApiError, bad_request, status_body
from flightctl.api.parsers import request_refusal
from flightctl.config import parse_duration
from flightctl.threads import in_thread as _in_thread

log = logging.getLogger(__name__)

#: Django's ``<str:name>`` converter: one non-empty path segment (uvicorn has decoded it)
RENDERED_PATH = re.compile(r"^/api/v1/devices/([^/]+)/rendered$")
STATUS_PATH = re.compile(r"^/api/v1/devices/([^/]+)/status$")
ENROLLMENT_PATH = re.compile(r"^/api/v1/enrollmentrequests/([^/]+)$")

Answer = tuple[int, dict | None, dict]  # status code, JSON body (None: empty), extra headers


class AgentApplication:
    """The agent API's ASGI application: the hot operations here, everything else to Django."""

    def __init__(self, django_application):
        self.django = django_application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            bad = request_refusal(path, scope.get("query_string", b"").decode("latin-1"), None)
            if bad is not None:  # before any route: a NUL in a name is no device's name
                await _respond(send, _answer_now(_error(bad)))
                return
            if path == "/healthz" and scope["method"] in ("GET", "HEAD"):
                # Liveness (the reference's healthChecks.livenessPath), and the benchmark's
                # trivial endpoint on this stack: TLS, HTTP, the response, nothing else.
                await _respond(send, _answer_now((200, {"status": "ok"}, {})))
                return
            if match := RENDERED_PATH.match(path):
                await _respond(send, rendered(scope, match[1]))
                return
            if scope["method"] == "PUT" and (match := STATUS_PATH.match(path)):
                started = time.monotonic()
                await _respond(send, put_status(scope, receive, match[1]))
                # The connected devices' latency, which paces an enrollment storm.
                admission.status_report(started, time.monotonic())
                return
            if admission.applies(path):  # a bounded share for enrollment storms
                await admission.run(_enrollment_application(self.django, scope), scope,
                                    receive, send,
                                    lambda answer: _respond(send, _answer_now(answer)))
                return
        await self.django(scope, receive, send)


async def _answer_now(answer: Answer) -> Answer:
    return answer


async def _respond(send, answering) -> None:
    try:
        code, body, extra = await answering
    except Exception as exc:
        if outage.is_outage(exc):  # PostgreSQL restarting: the device retries later
            log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc)
                        else type(exc).__name__)
            code, body, extra = outage.unavailable()
        else:  # what Django's handler500 would have made of it
            log.exception("agent API request failed")
            code, body, extra = 500, status_body(500, "internal error"), {}
    headers = [(k.encode(), v.encode()) for k, v in {**response_headers(), **extra}.items()]
    if listener.draining:
        # Stopping: the device's next call goes to a new connection, to a process that
        # accepts (the drain may answer before uvicorn has marked its connections closing).
        headers.append((b"connection", b"close"))
    payload = b""
    if body is not None:
        payload = json.dumps(body, cls=DjangoJSONEncoder, ensure_ascii=False).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _error(exc: ApiError) -> Answer:
    return exc.status_code, status_body(exc.status_code, exc.message), {}


# -- PUT /status -------------------------------------------------------------------------------


async def _read_body(receive) -> bytes | None:
    """The request body, or None when it exceeds Django's upload limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _store(peer, name: str, raw: bytes) -> Answer:
    try:
        return 200, store_status(peer, name, parse_json(raw)), {}
    except ApiError as exc:
        return _error(exc)


async def _peer_and_body(scope, receive):
    """``(peer, body, None)`` of a device's call with a body, or ``(None, None, answer)``: its
    refusal (no or a bad client certificate, API version) or 413 for a body over the limit."""
    peer, refusal = authenticate(_header(scope, b"flightctl-api-version"),
                                 scope.get("state") or {})
    if refusal is not None:
        return None, None, refusal
    raw = await _read_body(receive)
    if raw is None:
        return None, None, (413, status_body(413, "request body too large"), {})
    return peer, raw, None


async def put_status(scope, receive, name: str) -> Answer:
    peer, raw, refusal = await _peer_and_body(scope, receive)
    if refusal is not None:
        return refusal
    return await _in_thread(_store, peer, name, raw)


# -- enrollment: POST /enrollmentrequests, GET /enrollmentrequests/{name} ---------------------


def _enrollment_application(django, scope):
    """The enrolling device's two calls, answered here like the status PUT (Django's request
    cycle, a thread per call and its signals were most of the agent API's CPU per enrollment
    during a storm, docs/scale.md); the TPM challenge and anything else go to Django. Either
    way the call runs inside the admission gate."""
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == ENROLLMENT_PREFIX:
        return _hot(create_enrollment)
    if method == "GET" and (match := ENROLLMENT_PATH.match(path)):
        return _hot(lambda scope, receive: read_enrollment(scope, match[1]))
    return django


def _hot(handler):
    async def application(scope, receive, send):
        await _respond(send, handler(scope, receive))
    return application


def _call(function, *args) -> Answer:
    try:
        return function(*args)
    except ApiError as exc:
        return _error(exc)


async def create_enrollment(scope, receive) -> Answer:
    peer, raw, refusal = await _peer_and_body(scope, receive)
    if refusal is not None:
        return refusal
    return await _in_thread(_call, lambda: (201, create_enrollment_request(peer, raw), {}))


async def read_enrollment(scope, name: str) -> Answer:
    peer, refusal = authenticate(_header(scope, b"flightctl-api-version"),
                                 scope.get("state") or {})
    if refusal is not None:
        return refusal
    return await _in_thread(_call, lambda: (200, read_enrollment_request(peer, name), {}))


# -- GET /rendered -----------------------------------------------------------------------------


def _wait_timeout() -> float:
    return parse_duration(settings.FLIGHTCTL.rendered_wait_timeout)


def _version(payload) -> int | None:
    """The version a notification announced (None: a wake-up without one, e.g. the listener
    reconnected)."""
    try:
        return int(payload) if payload else None
    except ValueError:
        return None


async def _rendered_answer(org, name: str) -> Answer:
    body = await _in_thread(load_rendered_body, org, name)
    if body is None:
        return 404, status_body(404, f'Device of name "{name}" not found'), {}
    return 200, body, {}


async def _touch(org, name: str, delivered: bool = False) -> None:
    if last_seen_buffer.enabled:  # an in-memory append; the flusher writes it
        touch_last_seen(org, name, delivered=delivered)
    else:
        await _in_thread(lambda: touch_last_seen(org, name, delivered=delivered))


async def rendered(scope, name: str) -> Answer:
    """200 + rendered Device when the device's version differs from ``knownRenderedVersion``
    (or without it); otherwise wait for a render notification up to
    ``rendered_wait_timeout`` → 204."""
    peer, refusal = authenticate(_header(scope, b"flightctl-api-version"),
                                 scope.get("state") or {})
    if refusal is not None:
        return refusal
    if scope["method"] != "GET":
        return 405, status_body(405, f'Method "{scope["method"]}" not allowed.'), {}
    # A process that is stopping still answers, without waiting (the loop below): what is
    # new, or 204, with ``Connection: close`` so that the next call finds a process that
    # accepts. A stop is not an error the device should see (no 503: docs/reliability.md).
    try:
        require_device(peer, name)
        raw = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get(
            "knownRenderedVersion") or [""])[-1]
        try:
            known = int(raw) if raw != "" else None
        except ValueError:
            raise bad_request(f"invalid knownRenderedVersion {raw!r}: must be an integer")
    except ApiError as exc:
        return _error(exc)
    org = org_of(peer)
    await _touch(org, name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _wait_timeout()
    announced = None  # the version a render notification woke us for
    woken = False  # by a notification: what this call answers now is a delivery
    while True:
        # Subscribe before reading, so a render committed after the read still wakes us.
        waiter = listener.subscribe(org, name)
        try:
            # The cheap check first (no thread, one indexed lookup); the whole row only when
            # there is something new to send. A notification already says which version was
            # committed: a rollout's thousands of wake-ups skip the check.
            if announced:
                version = announced
            else:
                state = await agent_db.rendered_state(org, name)
                if state is None:
                    return 404, status_body(404, f'Device of name "{name}" not found'), {}
                version, awaiting, console = state
                if console and version:
                    # A console session to hand over: cleared before the read, so a session
                    # opened meanwhile is either in this answer or flags the next poll.
                    await agent_db.take_console_pending(org, name)
                    log.info("console sessions of device %s handed to its long-poll", name)
                    return await _rendered_answer(org, name)
                if awaiting and known is not None:
                    # The first call after a database restore: settle the device (paused if
                    # it knows more than the database) and answer at once.
                    await _in_thread(reconnect, org, name, known)
                    return await _rendered_answer(org, name)
            if version == 0:
                return 409, status_body(409, "no rendered version for device"), {}
            if known is None or version != known:
                if woken:  # the moment of delivery, which rollout pacing reads
                    await _touch(org, name, delivered=True)
                return await _rendered_answer(org, name)
            remaining = deadline - loop.time()
            if remaining <= 0 or listener.draining:
                return 204, None, {}
            # A client that goes away meanwhile is not watched for: its waiter ends at the
            # next render or the deadline, and uvicorn drops a response to a closed connection.
            done, _ = await asyncio.wait({waiter}, timeout=remaining)
            if not done or waiter.result() == DRAIN:
                return 204, None, {}
            announced, woken = _version(waiter.result()), True
        finally:
            listener.unsubscribe(org, name, waiter)

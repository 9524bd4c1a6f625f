"""The user's end of a console: ``GET /ws/v1/devices/{name}/console?metadata=<json>``.

As in the reference, the upgrade is answered only once the device has joined: the session is
listed on the device (devices.console.sessions), the agent's long-poll hands it over, the
agent opens its gRPC stream to the agent API, which joins this process's bridge
(devices.console.bridge) and says which protocol the agent chose; that protocol is the
subprotocol of the ``101``. A device that does not join within ``console_session_timeout``
gets the user a 504. From then on every binary message is relayed unchanged both ways (k8s
remotecommand ``v5.channel.k8s.io`` frames: the channel byte, then the data).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid

from django.conf import settings

from devices.console import bridge, sessions
from devices.console.sessions import close_session, open_session
from flightctl.api.errors import ApiError
from flightctl.api.events import actor_of
from flightctl.api.websockets import WebSocket, websocket_route
from flightctl.config import parse_duration
from flightctl.threads import in_thread

log = logging.getLogger(__name__)


class Held:
    """The sessions whose WebSockets this process holds. While there are any, one loop
    refreshes their rows' ``seen_at`` together (one UPDATE per interval, whatever their
    number), so that only rows of dead processes go stale (sessions.expire_stale)."""

    def __init__(self):
        self.ids: set[str] = set()
        self._beating: asyncio.Task | None = None

    def add(self, session_id: str) -> None:
        self.ids.add(session_id)
        if self._beating is None or self._beating.done():
            self._beating = asyncio.ensure_future(self._beat())

    def discard(self, session_id: str) -> None:
        self.ids.discard(session_id)

    async def _beat(self) -> None:
        interval = sessions.TOUCH_FRACTION * parse_duration(
            settings.FLIGHTCTL.console_session_timeout)
        while self.ids:
            await asyncio.sleep(interval)
            if self.ids:
                try:
                    await in_thread(sessions.touch, list(self.ids))
                except Exception:  # noqa: BLE001 - the database may be back next time
                    log.warning("console sessions: cannot refresh their rows", exc_info=True)


held = Held()


def _metadata(socket: WebSocket) -> str:
    """The session metadata of the request, with the subprotocols the client offered."""
    raw = socket.query("metadata")
    if not raw:
        raise ApiError(400, "incompatible client: missing session metadata")
    try:
        metadata = json.loads(raw)
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise ApiError(400, "metadata: Invalid value: must be a JSON object")
    metadata["protocols"] = socket.subprotocols
    return json.dumps(metadata, separators=(",", ":"))


@websocket_route(r"/ws/v1/devices/(?P<name>[^/]+)/console", "devices/console")
async def device_console(socket: WebSocket, name: str) -> None:
    session_id = str(uuid.uuid4())
    timeout = parse_duration(settings.FLIGHTCTL.console_session_timeout)
    address = await bridge.listener.start()
    joined = bridge.listener.expect(session_id)
    try:
        metadata = _metadata(socket)
        await socket.in_thread(lambda: open_session(
            socket.org_id, name, metadata, actor=actor_of(socket.user), bridge=address,
            session_id=uuid.UUID(session_id), stale_after=sessions.STALE_FACTOR * timeout))
    except ApiError as exc:
        bridge.listener.forget(session_id)
        await socket.deny(exc.status_code, exc.message)
        return
    held.add(session_id)
    try:
        await _serve(socket, name, session_id, joined, timeout)
    finally:
        held.discard(session_id)


async def _serve(socket: WebSocket, name: str, session_id: str, joined: asyncio.Future,
                 timeout: float) -> None:
    """The listed session, from waiting for the device to its end."""
    log.info("console session %s of device %s: WebSocket held by process %d", session_id,
             name, os.getpid())
    try:
        link = await asyncio.wait_for(joined, timeout)
    except (TimeoutError, asyncio.CancelledError):
        bridge.listener.forget(session_id)
        await socket.in_thread(close_session, session_id,
                               f"the device did not connect within {timeout:g}s")
        await socket.deny(504, f"timed out waiting for protocol for device: {name}")
        return
    outcome = "the server stopped"
    try:
        if not link.protocol:
            outcome = "the device selected no protocol"
            await socket.deny(500, f"failed selecting protocol for device: {name}")
        else:
            await socket.accept(link.protocol)
            outcome, code = await _relay(socket, link)
            await socket.close(code, "" if code == 1000 else outcome)
    finally:
        await link.close()
        await socket.in_thread(close_session, session_id, outcome)


async def _relay(socket: WebSocket, link: bridge.Link) -> tuple[str, int]:
    """Relay until one end finishes; what happened and the WebSocket close code."""

    async def from_user():
        while True:
            message = await socket.receive()
            if message is None:
                await link.send(bridge.CLOSE, b"the user disconnected")
                return "the user disconnected", 1000
            if isinstance(message, bytes) and message:
                await link.send(bridge.DATA, message)
            # Text messages are no part of the protocol: ignored, as by the reference.

    async def from_device():
        while True:
            kind, payload = await link.recv()
            if kind == bridge.DATA:
                await socket.send_bytes(payload)
            elif kind == bridge.ERROR:
                return f"the device failed: {payload.decode(errors='replace')}", 1011
            else:
                return payload.decode(errors="replace") or "the device ended the session", 1000

    tasks = [asyncio.ensure_future(from_user()), asyncio.ensure_future(from_device())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()

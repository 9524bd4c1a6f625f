"""Remote console sessions (agent.md §8.4): a shell on this device for a user of the service.

The service lists a new session in the rendered device's ``spec.consoles`` (and ends the
long-poll at once to deliver it). :meth:`ConsoleManager.sync` takes the list out of every
rendered document the publisher receives, and starts each session it has not seen
(deduplicated by session ID, ended ones remembered for five minutes). A session opens
``flightctl.v1.RouterService/Stream`` to the management endpoint with the management
certificate, metadata ``session-id``, ``client-name`` (this device) and
``selected-protocol``, and relays between the stream and the process (console.session).

Sessions run in one background thread with its own event loop, started with the first
session: nothing here waits on the spec sync or the status reports, nor they on a session,
and a spec update leaves running sessions alone. grpclib is imported only then, so an idle
agent never loads it.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
# Per-frame lines of the HTTP/2 libraries would drown the agent's own log at debug level.
for _name in ("hpack", "h2", "grpclib"):
    logging.getLogger(_name).setLevel(logging.INFO)

REMEMBER_ENDED = 300.0  # seconds an ended session's ID is still refused (the reference's 5 min)

if TYPE_CHECKING:
    import asyncio


class ConsoleManager:
    def __init__(self, agent):
        self.agent = agent
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._ended: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def sync(self, document: dict) -> None:
        """Start the new sessions ``document`` (a rendered device) lists, and take the list
        out of its spec: sessions are not part of what the device applies."""
        consoles = (document.get("spec") or {}).pop("consoles", None) or []
        for console in consoles if isinstance(consoles, list) else []:
            try:
                session_id = str((console or {}).get("sessionID") or "")
                if session_id and self._claim(session_id):
                    self._submit(self._run(session_id,
                                           str(console.get("sessionMetadata") or "{}")))
            except Exception as exc:  # noqa: BLE001 - never the publisher's problem
                log.error("console session %r not started: %s", console, exc)

    def _claim(self, session_id: str) -> bool:
        with self._lock:
            now = time.monotonic()
            self._ended = {k: t for k, t in self._ended.items() if now - t < REMEMBER_ENDED}
            if session_id in self._active or session_id in self._ended:
                return False
            self._active.add(session_id)
            return True

    def _release(self, session_id: str) -> None:
        with self._lock:
            self._active.discard(session_id)
            self._ended[session_id] = time.monotonic()

    def _submit(self, coroutine) -> None:
        import asyncio  # only with a session: ~9 MB of an idle agent's memory without one

        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="console",
                                 daemon=True).start()
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _run(self, session_id: str, raw_metadata: str) -> None:
        log.info("console session %s: starting", session_id)
        try:
            metadata = json.loads(raw_metadata)
            if not isinstance(metadata, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            log.error("console session %s: unreadable metadata: %s", session_id, exc)
            metadata = None
        try:
            await self._stream(session_id, metadata)
        except Exception as exc:  # noqa: BLE001 - one failed session must not stop the others
            log.error("console session %s failed: %s", session_id, exc)
        finally:
            self._release(session_id)
            log.info("console session %s: ended", session_id)

    def _tls(self) -> ssl.SSLContext:
        service, identity = self.agent.config.management, self.agent.identity
        # The service's CA alone is trusted when there is one, as by the agent's HTTP client.
        ca = None if service.insecure_skip_verify else service.ca_pem()
        ctx = ssl.create_default_context(cadata=ca.decode() if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # as the reference agent's gRPC client
        if service.insecure_skip_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        client_key = identity.tls_client_key()
        if client_key is not None:
            client_key.install(ctx, identity.cert_path)
        else:
            ctx.load_cert_chain(identity.cert_path, identity.tls_key_file())
        return ctx

    async def _stream(self, session_id: str, metadata: dict | None) -> None:
        from grpclib.client import Channel, StreamStreamMethod
        from grpclib.config import Configuration

        from flightctl_agent.console import session as console
        from flightctl_agent.console.wire import METHOD, StreamRequest, StreamResponse

        service = self.agent.config.management
        url = urlsplit(service.server)
        channel = Channel(url.hostname, url.port or 443, ssl=self._tls(), config=Configuration(
            ssl_target_name_override=service.tls_server_name or None))
        offered = (metadata or {}).get("protocols") or []
        chosen = console.PROTOCOL if console.PROTOCOL in offered else ""
        headers = {"session-id": session_id, "client-name": self.agent.name}
        if chosen:
            headers["selected-protocol"] = chosen
        try:
            method = StreamStreamMethod(channel, METHOD, StreamRequest, StreamResponse)
            async with method.open(metadata=headers) as stream:
                await stream.send_request()
                if metadata is None or not chosen:
                    why = ("unreadable session metadata" if metadata is None else
                           f"none of the protocols {offered} is supported")
                    await stream.send_message(StreamRequest(error=why))
                    await stream.end()
                    return
                await _serve(stream, metadata, self.agent.config.console_user)
        finally:
            channel.close()


async def _serve(stream, metadata: dict, user: str) -> None:
    """Run the session's process and relay its frames until it ends or the user leaves."""
    import asyncio

    from flightctl_agent.console import session as console
    from flightctl_agent.console.wire import StreamRequest

    async def send(frame: bytes) -> None:
        await stream.send_message(StreamRequest(payload=frame))

    try:
        process = console.Process(metadata, console.Account(user))
        await process.start()
    except console.ConsoleError as exc:
        await stream.send_message(StreamRequest(error=str(exc)))
        await stream.end()
        return

    async def from_user():
        while True:
            message = await stream.recv_message()
            if message is None or message.closed:
                return
            if message.payload:
                await process.handle(message.payload)

    async def to_user():
        await process.output(send)
        code = await process.wait()
        await send(bytes([console.ERROR]) + console.exit_status(code))
        await stream.end()

    tasks = [asyncio.ensure_future(from_user()), asyncio.ensure_future(to_user())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[1].done():  # the process ended: let the service close the stream
            await asyncio.wait([tasks[0]], timeout=10)
        else:  # the user left first
            process.stop()
            await asyncio.wait([tasks[1]], timeout=10)
    finally:
        for task in tasks:
            task.cancel()
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.debug("console stream ended: %s", task.exception())
        process.stop()
        process.close()

"""The bridge between the two processes of a console session.

A session has two ends in two processes, on any host: the user's WebSocket in a user API
process, the device's gRPC stream in an agent API process. The user API process listens on
one TCP socket (its bridge, opened with its first console) and records that address in the
session's row (devices.console.sessions); the agent API process that receives the device's
stream reads the row, connects, introduces itself, and from then on both relay frames.

Nothing of this is state only one process knows: the rendezvous is the database row, and
the bytes go straight from one process to the other, whichever processes (and hosts) they
are.

The connecting side proves it is a server process of this installation with an HMAC of the
session ID under the server's secret key, which every process of the installation shares
(and which is never stored in the database). A session is joined once: the listener
forgets it as soon as it is joined. The bridge is not encrypted; it listens on loopback by
default (``console_bridge_address``), and on a private network when the agent API runs on
other hosts.

Wire format, after the hello line ``{"session", "proof", "protocol"}`` and the answer
``ok``: frames of one kind byte, a 4-byte big-endian length and the payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import struct

from django.conf import settings

from flightctl.config import parse_address

log = logging.getLogger(__name__)

#: a payload of the session's protocol (a k8s remotecommand frame), relayed unchanged
DATA = 0
#: the sender's end is finished; the payload says why (UTF-8, may be empty)
CLOSE = 1
#: the sender's end failed; the payload says why; nothing follows
ERROR = 2

MAX_FRAME = 16 * 1024 * 1024
HELLO_TIMEOUT = 10.0
_HEADER = struct.Struct(">BI")


class BridgeError(Exception):
    """The other process could not be joined, or broke the bridge's protocol."""


def proof(session_id: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"console-bridge:{session_id}".encode(), hashlib.sha256).hexdigest()


class Link:
    """One joined session: frames in both directions between the two processes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: str = ""):
        self.reader, self.writer, self.protocol = reader, writer, protocol

    async def send(self, kind: int, payload: bytes = b"") -> None:
        """Send a frame; a bridge the other process has closed swallows it (its end is
        finished, :meth:`recv` says so)."""
        try:
            self.writer.write(_HEADER.pack(kind, len(payload)) + payload)
            await self.writer.drain()
        except ConnectionError:
            pass

    async def recv(self) -> tuple[int, bytes]:
        """The next frame; ``(CLOSE, reason)`` when the other process went away."""
        try:
            kind, size = _HEADER.unpack(await self.reader.readexactly(_HEADER.size))
            if size > MAX_FRAME:
                raise BridgeError(f"frame of {size} bytes")
            return kind, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return CLOSE, b"the other end of the bridge went away"

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class Listener:
    """The bridge socket of one user API process (one event loop)."""

    def __init__(self):
        self._server: asyncio.AbstractServer | None = None
        self._starting: asyncio.Lock | None = None
        self._expected: dict[str, asyncio.Future] = {}
        self.address = ""

    async def start(self) -> str:
        """Listen (once); the address other processes are to connect to."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._server is None:
                config = settings.FLIGHTCTL
                host, port = parse_address(config.console_bridge_address, any_port=True)
                self._server = await asyncio.start_server(self._joined, host, port)
                bound = self._server.sockets[0].getsockname()
                host, port = bound[0], bound[1]
                if config.console_bridge_advertise:
                    # Port 0 in the advertised address: this process's own bound port under
                    # the advertised name (each of several workers in one container listens
                    # on a port of its own; deploy/quadlets/flightctl-api.container).
                    host, advertised = parse_address(config.console_bridge_advertise,
                                                     any_port=True)
                    port = advertised or port
                self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                log.info("console bridge listening on %s", self.address)
        return self.address

    def expect(self, session_id: str) -> asyncio.Future:
        """A future of the session's :class:`Link`, set when the device's end joins."""
        future = asyncio.get_running_loop().create_future()
        self._expected[session_id] = future
        return future

    def forget(self, session_id: str) -> None:
        future = self._expected.pop(session_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def _joined(self, reader, writer) -> None:
        link = Link(reader, writer)
        try:
            line = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT)
            hello = json.loads(line or b"null")
            session = str(hello["session"])
            if not hmac.compare_digest(str(hello.get("proof", "")), proof(session)):
                raise BridgeError("wrong proof")
            future = self._expected.pop(session, None)
            if future is None or future.done():
                raise BridgeError(f"no session {session} is waiting here")
            link.protocol = str(hello.get("protocol") or "")
            writer.write(b"ok\n")
            await writer.drain()
        except (BridgeError, ValueError, KeyError, TypeError, TimeoutError, OSError) as exc:
            log.warning("console bridge: refused a connection: %s", exc)
            await link.close()
            return
        future.set_result(link)


listener = Listener()


async def connect(address: str, session_id: str, protocol: str) -> Link:
    """Join session ``session_id`` at the bridge ``address`` (agent API side)."""
    host, port = parse_address(address)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                HELLO_TIMEOUT)
        hello = {"session": session_id, "proof": proof(session_id), "protocol": protocol}
        writer.write(json.dumps(hello).encode() + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise BridgeError(f"cannot reach the console bridge {address}: {exc}") from None
    if answer.strip() != b"ok":
        writer.close()
        raise BridgeError(f"the console bridge {address} did not take session {session_id}")
    return Link(reader, writer, protocol)

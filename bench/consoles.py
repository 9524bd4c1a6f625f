"""Open console sessions during a benchmark window (``python -m bench.run --consoles N``).

Each session is real on the server's side: a user WebSocket on the user API, and the
device's end on the agent API's gRPC port with a simulated device's own management
certificate (the simulator keeps key and certificate in ``<work>/devices-*/<name>.pem``),
joined through the server's bridge. Both ends exchange a line every half second until
:meth:`ConsoleLoad.stop`, so the window measures agents while consoles carry traffic.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

TICK = 0.5


class ConsoleLoad:
    def __init__(self, base: str, agent_port: int, ca: str, token: str, work: Path,
                 count: int, api, agent_host: str | None = None):
        self.base, self.agent_port, self.ca, self.token = base, agent_port, ca, token
        # The device's end may go to another host than the user's (bench/multihost.py).
        self.agent_host = agent_host or urlsplit(base).hostname
        self.count, self.api = count, api
        self.devices = sorted(work.glob("devices-*/*.pem"))[:count]
        self.stopping = threading.Event()
        self.frames = {"to_user": 0, "to_device": 0}
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()

    def start(self, timeout: float = 120) -> None:
        if len(self.devices) < self.count:
            raise RuntimeError(f"only {len(self.devices)} device certificates for "
                               f"{self.count} consoles")
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.users, self.ends = [], []
        for pem in self.devices:
            thread = threading.Thread(target=self._user, args=(pem.stem,), daemon=True)
            thread.start()
            self.users.append(thread)
            session = self._listed(pem.stem, timeout)
            self.ends.append(asyncio.run_coroutine_threadsafe(self._device(pem, session),
                                                              self.loop))
        deadline = time.monotonic() + timeout
        while self.frames["to_user"] < self.count and time.monotonic() < deadline:
            time.sleep(0.5)
        if self.frames["to_user"] < self.count:
            raise RuntimeError(f"console sessions did not start: {self.errors[:3]}")

    def stop(self) -> dict:
        self.stopping.set()
        for thread in self.users:
            thread.join(30)
        for end in self.ends:
            try:
                end.result(30)
            except Exception as exc:  # noqa: BLE001 - reported with the figures
                self.errors.append(f"device end: {exc}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        return {"sessions": self.count, **self.frames, "errors": self.errors[:5]}

    def _listed(self, name: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.api.get(f"{self.base}/api/v1/devices/{name}", timeout=30)
            annotations = response.json()["metadata"].get("annotations") or {}
            listed = json.loads(annotations.get("device-controller/console") or "[]")
            if listed:
                return listed[-1]["sessionID"]
            time.sleep(0.5)
        raise RuntimeError(f"no console session listed on {name}")

    def _user(self, name: str) -> None:
        from websockets.sync.client import connect

        context = ssl.create_default_context(cafile=self.ca)
        query = urlencode({"metadata": json.dumps({"tty": False,
                                                   "command": {"command": "cat"}})})
        url = self.base.replace("https://", "wss://") + f"/ws/v1/devices/{name}/console?{query}"
        try:
            with connect(url, ssl=context, subprotocols=["v5.channel.k8s.io"],
                         open_timeout=120,
                         additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
                while not self.stopping.is_set():
                    ws.send(b"\x00ping\n")
                    try:
                        ws.recv(timeout=TICK)
                        self.frames["to_user"] += 1
                    except TimeoutError:
                        pass
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.errors.append(f"user {name[:8]}: {exc}")

    async def _device(self, pem: Path, session: str) -> None:
        from flightctl_agent.console.wire import METHOD, StreamRequest, StreamResponse
        from grpclib.client import Channel, StreamStreamMethod

        context = ssl.create_default_context(cafile=self.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(str(pem))
        context.set_alpn_protocols(["h2"])
        channel = Channel(self.agent_host, self.agent_port, ssl=context)
        try:
            method = StreamStreamMethod(channel, METHOD, StreamRequest, StreamResponse)
            async with method.open(metadata={
                    "session-id": session, "client-name": pem.stem,
                    "selected-protocol": "v5.channel.k8s.io"}) as stream:
                await stream.send_request()

                async def receive():
                    while (message := await stream.recv_message()) is not None:
                        if message.closed:
                            return
                        self.frames["to_device"] += 1
                receiving = asyncio.ensure_future(receive())
                while not self.stopping.is_set() and not receiving.done():
                    await stream.send_message(StreamRequest(payload=b"\x01tick\n"))
                    await asyncio.sleep(TICK)
                await stream.send_message(StreamRequest(
                    payload=b'\x03{"metadata":{},"status":"Success"}'))
                await stream.end()
                receiving.cancel()
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.errors.append(f"device {pem.stem[:8]}: {exc}")
        finally:
            channel.close()

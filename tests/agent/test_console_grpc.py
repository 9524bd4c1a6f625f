"""The management endpoint speaks the reference agent's gRPC: a client generated from our
.proto files by grpcio-tools (gRPC's C core, ALPN h2 as grpc-go negotiates it) opens a
device's end of a console session on the agent API's own port, and the user's WebSocket gets
what it sends. The generated code in the repository is what the .proto files generate, and
the agent's own encoding of the stream's messages is protobuf's."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.net import wait_for

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("reference_grpc_client.py")


def reference_client(*args) -> list[dict]:
    result = subprocess.run([sys.executable, str(CLIENT), *map(str, args)], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _open_console(server, name: str, received: list, ready: threading.Event):
    """The user's end, in a thread: connect, expect the greeting, type a line, read to the end."""
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(server.ca))
    metadata = json.dumps({"tty": False, "command": {"command": "cat"}})
    url = (server.url.replace("https://", "wss://") + f"/ws/v1/devices/{name}/console?"
           + urlencode({"metadata": metadata}))
    with connect(url, ssl=context, subprotocols=["v5.channel.k8s.io"], open_timeout=60,
                 additional_headers={"Authorization": f"Bearer {server.token}"}) as socket:
        received.append(("subprotocol", socket.subprotocol))
        received.append(("frame", socket.recv(timeout=30)))
        socket.send(b"\x00typed by the user\n")
        for message in socket:
            received.append(("frame", message))
    ready.set()


def test_a_reference_agent_s_console_stream_is_accepted(server, make_agent):
    agent = make_agent("reference")
    name = agent.enroll()
    agent.stop()  # from now on the generated client is this device's agent
    received, done = [], threading.Event()
    user = threading.Thread(target=_open_console, args=(server, name, received, done),
                            daemon=True)
    user.start()

    def listed():
        annotations = (server.device(name) or {})["metadata"].get("annotations") or {}
        return json.loads(annotations.get("device-controller/console") or "[]")
    session = wait_for(listed, 30, what="the session listed on the device")[0]
    # The agent's view: the session is in the rendered device's spec.consoles.
    rendered = server.get(f"/api/v1/devices/{name}/rendered").json()
    assert rendered["spec"]["consoles"] == [session]
    metadata = json.loads(session["sessionMetadata"])
    assert metadata["protocols"] == ["v5.channel.k8s.io"]
    assert metadata["command"] == {"command": "cat"}

    certs = agent.path("/var/lib/flightctl/certs")
    events = reference_client("router", f"127.0.0.1:{server.agent_port}", server.ca,
                              certs / "agent.crt", certs / "agent.key", name,
                              session["sessionID"])
    assert done.wait(30)
    assert received[0] == ("subprotocol", "v5.channel.k8s.io")
    assert received[1] == ("frame", b"\x01hello from a reference agent\n")
    assert received[2] == ("frame", b"\x01typed by the user\n")
    assert json.loads(received[3][1][1:]) == {"metadata": {}, "status": "Success"}
    assert bytes.fromhex(events[0]["payload"]) == b"\x00typed by the user\n"
    assert events[-1] == {"code": "OK"}
    wait_for(lambda: not listed(), 30, what="the session unlisted")


def test_an_unknown_session_is_refused_with_a_grpc_status(server, make_agent):
    agent = make_agent("stranger")
    name = agent.enroll()
    certs = agent.path("/var/lib/flightctl/certs")
    events = reference_client("router", f"127.0.0.1:{server.agent_port}", server.ca,
                              certs / "agent.crt", certs / "agent.key", name,
                              "00000000-0000-0000-0000-000000000001")
    assert events[-1]["code"] == "NOT_FOUND"
    # Another device's name in client-name: refused, the certificate says who is calling.
    events = reference_client("router", f"127.0.0.1:{server.agent_port}", server.ca,
                              certs / "agent.crt", certs / "agent.key", "x" * 52,
                              "00000000-0000-0000-0000-000000000001")
    assert events[-1]["code"] == "UNAUTHENTICATED"


def test_the_tpm_challenge_service_is_served_to_enrollment_certificates(server, tmp_path):
    cert, key = server.enrollment_credentials()
    (tmp_path / "e.crt").write_bytes(cert)
    (tmp_path / "e.key").write_bytes(key)
    events = reference_client("challenge", f"127.0.0.1:{server.agent_port}", server.ca,
                              tmp_path / "e.crt", tmp_path / "e.key", "no-such-request")
    assert events[0] == {"kind": "error",
                         "message": 'EnrollmentRequest of name "no-such-request" not found'}
    assert events[-1]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("message", [
    {}, {"payload": b"\x01\x00" * 300}, {"closed": True}, {"error": "broken"},
    {"payload": b"\x03{}", "closed": True, "error": "é"}])
def test_the_agent_encodes_the_stream_messages_as_protobuf_does(message):
    from flightctl_agent.console import wire

    from agent_api.grpc_v1 import router_pb2

    ours = wire.StreamRequest(**message).SerializeToString()
    assert router_pb2.StreamRequest.FromString(ours) == router_pb2.StreamRequest(**message)
    response = {k: v for k, v in message.items() if k != "error"}
    theirs = router_pb2.StreamResponse(**response).SerializeToString()
    assert wire.StreamResponse.FromString(theirs) == wire.StreamResponse(**response)


def test_the_committed_grpc_code_is_what_the_proto_files_generate(tmp_path):
    subprocess.run(["bash", str(ROOT / "scripts" / "generate-grpc.sh"), str(tmp_path)],
                   check=True, cwd=ROOT, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    for generated in sorted((tmp_path / "agent_api" / "grpc_v1").iterdir()):
        committed = ROOT / "agent_api" / "grpc_v1" / generated.name
        assert committed.read_text() == generated.read_text(), generated.name

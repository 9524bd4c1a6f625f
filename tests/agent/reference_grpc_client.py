"""A stand-in for Flight Control's own agent on the gRPC side: grpcio (gRPC's C core, which
negotiates ALPN h2 as grpc-go does) with stubs generated at run time, by grpcio-tools, from
agent_api/grpc_v1/*.proto. Run as a script by tests/agent/test_console_grpc.py; prints one
JSON line per event.

    reference_grpc_client.py router ADDRESS CA CERT KEY DEVICE SESSION
        opens the device's end of console SESSION, sends a stdout frame, echoes the first
        frame it receives back as stdout, then the exit status 0, and closes.
    reference_grpc_client.py challenge ADDRESS CA CERT KEY NAME
        asks for a TPM credential challenge for enrollment request NAME.
"""

import importlib
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import grpc
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]


def stubs(name: str):
    """``<name>_pb2`` and ``<name>_pb2_grpc`` generated from our .proto file."""
    out = Path(tempfile.mkdtemp(prefix="reference-stubs-"))
    (out / "reference").mkdir()
    shutil.copy(ROOT / "agent_api" / "grpc_v1" / f"{name}.proto", out / "reference")
    code = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}",
                        f"reference/{name}.proto"])
    assert code == 0, code
    sys.path.insert(0, str(out))
    return (importlib.import_module(f"reference.{name}_pb2"),
            importlib.import_module(f"reference.{name}_pb2_grpc"))


def say(**event):
    print(json.dumps(event), flush=True)


def channel(address, ca, cert, key):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(), private_key=Path(key).read_bytes(),
        certificate_chain=Path(cert).read_bytes())
    return grpc.secure_channel(address, credentials)


def router(address, ca, cert, key, device, session):
    pb2, pb2_grpc = stubs("router")
    stub = pb2_grpc.RouterServiceStub(channel(address, ca, cert, key))
    received = threading.Event()
    echo = []

    def requests():
        yield pb2.StreamRequest(payload=b"\x01hello from a reference agent\n")
        received.wait(30)
        yield pb2.StreamRequest(payload=b"\x01" + b"".join(echo))
        yield pb2.StreamRequest(payload=b"\x03" + json.dumps(
            {"metadata": {}, "status": "Success"}).encode())
        yield pb2.StreamRequest(closed=True)

    metadata = [("session-id", session), ("client-name", device),
                ("selected-protocol", "v5.channel.k8s.io")]
    try:
        for response in stub.Stream(requests(), metadata=metadata):
            say(payload=response.payload.hex(), closed=response.closed)
            if response.payload and not echo:
                echo.append(response.payload[1:])
                received.set()
    except grpc.RpcError as exc:
        say(code=exc.code().name, details=exc.details())
        return
    say(code="OK")


def challenge(address, ca, cert, key, name):
    pb2, pb2_grpc = stubs("enrollment")
    stub = pb2_grpc.EnrollmentStub(channel(address, ca, cert, key))
    request = pb2.AgentChallenge(
        challenge_request=pb2.ChallengeRequest(enrollment_request_name=name))
    try:
        for response in stub.TPMChallenge(iter([request])):
            say(kind=response.WhichOneof("payload"),
                message=getattr(response, response.WhichOneof("payload")).message
                if response.WhichOneof("payload") != "challenge" else "")
    except grpc.RpcError as exc:
        say(code=exc.code().name, details=exc.details())
        return
    say(code="OK")


if __name__ == "__main__":
    {"router": router, "challenge": challenge}[sys.argv[1]](*sys.argv[2:])

"""OCI registries on loopback for the repository checks.

``token_registry`` is ``docker-registry`` with token authentication, the scheme of quay.io and
registry.redhat.io: the registry answers ``401`` with a ``Bearer realm=...,service=...,scope=...``
challenge; the client fetches a token from the realm with its credentials and retries with it.
The token service here is a small HTTP server that checks a user's password and signs a JWT
(ES256, its certificate in the ``x5c`` header) that the registry verifies against the
certificate it was configured to trust.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.gitservers import REGISTRY_PASSWORD, REGISTRY_USER, require, wait_port
from tests.net import JSONHandler, free_port, serve_http

SERVICE = "flightctl-test-registry"
ISSUER = "flightctl-test-token-service"
IMAGE, TAG = "centos-bootc/centos-bootc", "9.5"


def start_registry(home: Path, storage: Path, auth: str = "") -> tuple[subprocess.Popen, str]:
    """``docker-registry`` on a free loopback port over ``storage``; ``auth`` is the YAML of
    its ``auth:`` section (none when empty). Returns the process and ``host:port``."""
    port = free_port()
    config = home / f"config-{port}.yml"
    config.write_text("version: 0.1\nlog:\n  level: error\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n" + auth)
    process = subprocess.Popen([require("docker-registry"), "serve", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    return process, f"127.0.0.1:{port}"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def push_image(registry: str, name: str, tag: str, auth=(REGISTRY_USER, REGISTRY_PASSWORD)):
    """Put a minimal OCI image (a config blob, no layers) under ``name:tag`` through the
    registry's own upload API, as ``podman push`` would."""
    base = f"http://{registry}/v2/{name}"
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    upload = requests.post(f"{base}/blobs/uploads/", auth=auth, timeout=10)
    assert upload.status_code == 202, upload.text
    location = upload.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    done = requests.put(location, params={"digest": digest}, data=config, auth=auth, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest, "size": len(config)},
                "layers": []}
    put = requests.put(f"{base}/manifests/{tag}", data=json.dumps(manifest), auth=auth,
                       timeout=10,
                       headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert put.status_code == 201, put.text


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues pull tokens for ``REGISTRY_USER`` (Basic auth on the token request)."""

    def __init__(self, home: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = home / "token-root.crt"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict] = []
        service = self

        class Handler(JSONHandler):
            def do_GET(self):  # noqa: N802 - the http.server interface
                service.requests.append({"path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                expected = "Basic " + base64.b64encode(
                    f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_json(401, {"error": "unauthorized"})
                    return
                query = parse_qs(urlparse(self.path).query)
                self.send_json(200, {"token": service.token(query.get("scope", []))})

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def token(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:  # repository:<name>:<actions>; only pulls are granted
            kind, _, rest = scope.partition(":")
            name, _, _actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": ["pull"]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": REGISTRY_USER, "aud": SERVICE, "iat": now,
                  "nbf": now - 10, "exp": now + 300, "jti": secrets.token_hex(8),
                  "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(),
                                                  ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory):
    """``docker-registry`` with htpasswd (Basic) auth for ``REGISTRY_USER``; yields
    ``host:port``."""
    home = tmp_path_factory.mktemp("registry")
    subprocess.run([require("htpasswd"), "-iBc", str(home / "htpasswd"), REGISTRY_USER],
                   input=REGISTRY_PASSWORD.encode(), check=True, capture_output=True)
    process, host = start_registry(home, home / "data", auth=(
        f"auth:\n  htpasswd:\n    realm: test\n    path: {home / 'htpasswd'}\n"))
    yield host
    stop(process)


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """``(host:port, TokenService)``: a registry with token auth holding ``IMAGE:TAG``."""
    home = tmp_path_factory.mktemp("token-registry")
    storage = home / "data"
    # The image goes in through a registry without auth on the same storage.
    seeder, host = start_registry(home, storage)
    try:
        push_image(host, IMAGE, TAG, auth=None)
    finally:
        stop(seeder)
    tokens = TokenService(home)
    process, host = start_registry(home, storage, auth=(
        f"auth:\n  token:\n    realm: {tokens.url}\n    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.bundle}\n"))
    yield host, tokens
    stop(process)
    tokens.close()

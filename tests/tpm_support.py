"""Real parts for identity tests: software TPMs (swtpm) with manufacturer CAs, and the agent API
server process with its PKI.

swtpm is required, not optional: a missing binary fails the test with what to install
(``scripts/install-test-deps.sh`` installs it as root).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.net import free_port

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "agent") not in sys.path:  # the agent is a separate distribution
    sys.path.insert(0, str(ROOT / "agent"))

INSTALL_HINT = ("run scripts/install-test-deps.sh as root (apt-get install swtpm swtpm-tools "
                "libtss2-dev)")


def free_port_pair() -> int:
    """A port P with P+1 also free (swtpm's server and control ports)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair")


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: {INSTALL_HINT}")
    return path


class ManufacturerCA:
    """A TPM manufacturer stand-in: swtpm's local CA, kept in its own directory."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.localca_conf = directory / "swtpm-localca.conf"
        self.localca_conf.write_text(
            f"statedir = {directory}\nsigningkey = {directory}/signkey.pem\n"
            f"issuercert = {directory}/issuercert.pem\ncertserial = {directory}/certserial\n"
        )
        self.setup_conf = directory / "swtpm_setup.conf"
        self.setup_conf.write_text(
            f"create_certs_tool = {require('swtpm_localca')}\n"
            f"create_certs_tool_config = {self.localca_conf}\n"
            "create_certs_tool_options = /etc/swtpm-localca.options\n"
            "active_pcr_banks = sha256\n"
        )

    def ca_files(self) -> list[str]:
        """Root and issuing CA certificates (exist after the first TPM is provisioned)."""
        return [str(self.directory / "swtpm-localca-rootca-cert.pem"),
                str(self.directory / "issuercert.pem")]


class SoftwareTPM:
    """A swtpm whose EK certificate was issued by ``ca``, listening on a free TCP port."""

    def __init__(self, state: Path, ca: ManufacturerCA):
        require("swtpm")
        state.mkdir(parents=True, exist_ok=True)
        self.state = state
        result = subprocess.run(
            [require("swtpm_setup"), "--tpm2", "--tpmstate", str(state), "--create-ek-cert",
             "--create-platform-cert", "--overwrite", "--config", str(ca.setup_conf)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        self.port = free_port_pair()
        self.process = subprocess.Popen(
            [require("swtpm"), "socket", "--tpmstate", f"dir={state}", "--tpm2",
             "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read()
                assert time.monotonic() < deadline, "swtpm did not start"
                time.sleep(0.05)

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the agent API server ----------------------------------------------------------------------


def database_url() -> str:
    """The URL of the test database this pytest process uses (for the server subprocess)."""
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    if host.startswith("/"):
        return f"postgres://{auth}@{port}/{db['NAME']}?host={host}"
    return f"postgres://{auth}@{host}{port}/{db['NAME']}"


@dataclasses.dataclass
class AgentServer:
    url: str
    data_dir: Path
    ca_bundle: Path
    log: Path
    process: subprocess.Popen


@contextmanager
def agent_api_server(data_dir: Path, *, tpm_ca_files: list[str] = (), wait_timeout="3s"):
    """Start ``python -m agent_api`` on the test database, sharing its PKI (in
    ``data_dir``) and settings with this process; yield an :class:`AgentServer`."""
    from django.conf import settings

    from flightctl.pki import PKI

    original = settings.FLIGHTCTL
    settings.FLIGHTCTL = dataclasses.replace(
        original, data_dir=data_dir, tpm_ca_files=list(tpm_ca_files),
        rendered_wait_timeout=wait_timeout,
    )
    pki = PKI(data_dir)
    cert, key = pki.server_certificate("server", [])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    env.update({
        "FLIGHTCTL_DATA_DIR": str(data_dir), "FLIGHTCTL_DATABASE_URL": database_url(),
        "FLIGHTCTL_RENDERED_WAIT_TIMEOUT": wait_timeout,
        "FLIGHTCTL_TPM_CA_FILES": ",".join(tpm_ca_files), "PYTHONPATH": str(ROOT),
        "FLIGHTCTL_SECRET_KEY": settings.SECRET_KEY,
    })
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = data_dir / "agent-api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent_api", "--host", "127.0.0.1", "--port",
             str(port), "--certfile", str(cert), "--keyfile", str(key), "--ca-certs",
             str(pki.bundle_path), "--log-level", "debug"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    server = AgentServer(f"https://127.0.0.1:{port}", data_dir, pki.bundle_path, log, process)
    try:
        wait_for_port(port, process, log)
        yield server
    finally:
        settings.FLIGHTCTL = original
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_port(port: int, process, log: Path | None, timeout: float = 30) -> None:
    """Wait until something accepts connections on ``port``; ``log`` (if any) explains a failure."""
    def output() -> str:
        return log.read_text() if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"agent API exited early:\n{output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"agent API did not come up:\n{output()}")


# -- an agent's side of the wire ---------------------------------------------------------------


def new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def csr_pem(key, common_name: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM).decode()


class AgentClient:
    """What a device agent does on the wire: HTTPS to the agent API with a client certificate
    and a private key kept in files (0600)."""

    def __init__(self, server: AgentServer, cert_pem: bytes | str, key_pem: bytes,
                 directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.server = server
        self.cert_file = directory / "client.crt"
        self.key_file = directory / "client.key"
        self.cert_file.write_bytes(cert_pem.encode() if isinstance(cert_pem, str) else cert_pem)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)

    def request(self, method: str, path: str, **kwargs):
        import requests

        headers = {"Flightctl-API-Version": "v1beta1", **kwargs.pop("headers", {})}
        # verify= on each call: REQUESTS_CA_BUNDLE in the environment overrides a session's.
        return requests.request(method, self.server.url + path, headers=headers,
                                cert=(str(self.cert_file), str(self.key_file)),
                                verify=str(self.server.ca_bundle),
                                timeout=kwargs.pop("timeout", 30), **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: dict, **kwargs):
        return self.request("POST", path, json=body, **kwargs)

    def put(self, path: str, body: dict, **kwargs):
        return self.request("PUT", path, json=body, **kwargs)


def enrollment_client(api, server: AgentServer, directory: Path, name: str | None = None):
    """An agent holding an enrollment certificate obtained as users do: a CSR for signer
    ``enrollment`` (auto-approved), then ``GET /enrollmentconfig?csr=``."""
    import base64
    import uuid

    name = name or f"client-enrollment-{uuid.uuid4().hex[:8]}"

    key = new_key()
    request = base64.b64encode(csr_pem(key, name).encode()).decode()
    created = api.post("/api/v1/certificatesigningrequests", {
        "apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": request, "signerName": "enrollment",
                 "usages": ["clientAuth", "CA:false"]},
    }, format="json")
    assert created.status_code == 201, created.json()
    config = api.get("/api/v1/enrollmentconfig", {"csr": name}).json()["enrollment-service"]
    cert = base64.b64decode(config["authentication"]["client-certificate-data"])
    client = AgentClient(server, cert, key_pem(key), directory)
    client.csr_name = name
    return client

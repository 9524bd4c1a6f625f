"""Real parts for the agent's end-to-end tests: a server, a loopback registry, agent processes.

Every agent runs as its own ``flightctl-agent`` process in its own root directory
(``FLIGHTCTL_TEST_ROOT_DIR``), supervised like systemd's ``Restart=always`` so that the bootc and
systemctl stand-ins can 'reboot' it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.net import free_port, wait_for

BIN = Path(sys.executable).parent
STANDINS = Path(__file__).resolve().parent / "standins"


def path_without(tools: tuple[str, ...], workdir: Path) -> str:
    """A PATH like this one, minus ``tools``: a directory of links to every other command.

    A device "without podman" is a plain machine, not a crippled one: the agent still finds
    sh, python3 (the stand-ins) and everything else it may run."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            name = entry.name
            if name in tools or name.startswith(tuple(f"{t}-" for t in tools)):
                continue
            link = bin_dir / name
            if not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    for tool in tools:
        assert not shutil.which(tool, path=str(bin_dir)), f"{tool} still on PATH"
    return str(bin_dir)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise AssertionError(f"{name} is required by this test: run scripts/install-test-deps.sh")
    return path


# --- registry and images ------------------------------------------------------------------

class Registry:
    """``docker-registry`` serving plain HTTP on a free loopback port."""

    def __init__(self, workdir: Path):
        require_tool("docker-registry")
        require_tool("podman")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        storage = workdir / "storage"
        storage.mkdir(parents=True)
        config = workdir / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1, "storage": {"filesystem": {"rootdirectory": str(storage)}},
            "http": {"addr": self.host}, "log": {"level": "error"}}))
        # podman must talk plain HTTP to this port: a registries.conf of our own, inherited by
        # the agents (the standard CONTAINERS_REGISTRIES_CONF variable), not a host change.
        self.registries_conf = workdir / "registries.conf"
        self.registries_conf.write_text(
            f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n')
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _http_ok(f"http://{self.host}/v2/"), 30, what="registry")
        self.rootfs = workdir / "rootfs.tar"
        _busybox_tar(self.rootfs)

    def env(self) -> dict:
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}

    def build(self, name: str, tag: str, labels: dict | None = None) -> str:
        """Push a busybox image that sleeps (stopping at once on SIGTERM); returns its ref."""
        ref = f"{self.host}/{name}:{tag}"
        changes = ["--change", 'CMD ["/bin/sh", "-c", "trap \'exit 0\' TERM; '
                   'while true; do sleep 1; done"]']
        for key, value in (labels or {}).items():
            changes += ["--change", f"LABEL {key}={value}"]
        subprocess.run(["podman", "import", *changes, str(self.rootfs), ref], check=True,
                       capture_output=True)
        subprocess.run(["podman", "push", "-q", "--tls-verify=false", ref], check=True,
                       capture_output=True)
        # Pushed images leave local storage so that agents really pull them.
        subprocess.run(["podman", "rmi", "-f", ref], capture_output=True)
        return ref

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _busybox_tar(path: Path) -> None:
    busybox = require_tool("busybox")
    with tarfile.open(path, "w") as tar:
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "sleep", "cat", "echo", "ls", "true", "env", "printenv"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for d in ("tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)


def podman_containers(label: str | None = None) -> list[dict]:
    args = ["podman", "ps", "-a", "--format", "json"]
    if label:
        args += ["--filter", f"label={label}"]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout
                      or "[]")


# --- server -------------------------------------------------------------------------------

def _encryption_key():
    from repos.crypto import key_path

    return key_path()


class Server:
    """A ``flightctl-server serve`` process sharing the test database with this process."""

    def __init__(self, data_dir: Path, database_url: str, token: str,
                 tpm_ca_files: list[str] = ()):
        self.data_dir = data_dir
        self.port, self.agent_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.agent_url = f"https://127.0.0.1:{self.agent_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
        from django.conf import settings

        # The server's task workers share this process's database and its queue, so they
        # must read the task payloads this process signs: same secret key.
        env.update({"FLIGHTCTL_DATA_DIR": str(data_dir), "FLIGHTCTL_DATABASE_URL": database_url,
                    "FLIGHTCTL_RENDERED_WAIT_TIMEOUT": "30s",
                    "FLIGHTCTL_CONSOLE_SESSION_TIMEOUT": "15s",
                    "FLIGHTCTL_SECRET_KEY": settings.SECRET_KEY,
                    "FLIGHTCTL_ENCRYPTION_KEY_FILE": str(_encryption_key()),
                    "FLIGHTCTL_TPM_CA_FILES": ",".join(tpm_ca_files)})
        self.log = open(data_dir.parent / "server.log", "w")  # noqa: SIM115 - lives with server
        self.process = subprocess.Popen(
            [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{self.port}",
             "--agent-address", f"127.0.0.1:{self.agent_port}", "--workers", "1"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ca = data_dir / "pki" / "ca.crt"
        self.token = token
        wait_for(self._started, 120, what="server")
        wait_for(self._agent_up, 60, what="agent API")

    def _started(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {self.process.returncode}")
        try:
            return requests.get(f"{self.url}/healthz", verify=str(self.ca),
                                timeout=5).status_code == 200
        except (OSError, requests.RequestException):
            return False

    def _agent_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.agent_port), timeout=1):
                return True
        except OSError:
            return False

    def _request(self, method: str, path: str, body=None) -> requests.Response:
        # verify= per call: REQUESTS_CA_BUNDLE in the environment would override a session's.
        return requests.request(method, f"{self.url}{path}", json=body, verify=str(self.ca),
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self._request("GET", path)

    def put(self, path: str, body) -> requests.Response:
        return self._request("PUT", path, body)

    def post(self, path: str, body) -> requests.Response:
        return self._request("POST", path, body)

    def device(self, name: str) -> dict | None:
        r = self.get(f"/api/v1/devices/{name}")
        return r.json() if r.status_code == 200 else None

    def enrollment_credentials(self) -> tuple[bytes, bytes]:
        """An enrollment certificate and key from the user API (auto-approved signer)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"client-enrollment-{os.urandom(4).hex()}"
        csr = (x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(key, hashes.SHA256()))
        r = self.post("/api/v1/certificatesigningrequests", {
            "apiVersion": "v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr.public_bytes(
                serialization.Encoding.PEM)).decode(),
                "signerName": "flightctl.io/enrollment", "usages": ["clientAuth", "CA:false"]}})
        assert r.status_code in (200, 201), r.text

        def issued():
            cert = (self.get(f"/api/v1/certificatesigningrequests/{name}").json().get("status")
                    or {}).get("certificate")
            return cert
        cert = wait_for(issued, 30, what="enrollment certificate")
        pem = base64.b64decode(cert) if not cert.startswith("-----") else cert.encode()
        return pem, key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def approve(self, name: str, labels: dict | None = None) -> None:
        wait_for(lambda: self.get(f"/api/v1/enrollmentrequests/{name}").status_code == 200, 60,
                 what=f"enrollment request {name}")
        r = self.put(f"/api/v1/enrollmentrequests/{name}/approval",
                     {"approved": True, "labels": labels or {}, "replaceLabels": False})
        assert r.status_code == 200, r.text

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --- agents -------------------------------------------------------------------------------

ENROLL_URL = re.compile(r"/enroll/([0-9a-v]{52})")


class AgentProcess:
    """One device: a root directory, a config, and a supervised ``flightctl-agent`` process."""

    def __init__(self, root: Path, server: Server, env: dict | None = None,
                 bootc: bool = False, extra_config: dict | None = None,
                 without: tuple[str, ...] = ()):
        self.root = root
        self.server = server
        root.mkdir(parents=True, exist_ok=True)
        cert, key = server.enrollment_credentials()
        config = {
            "enrollment-service": {
                "service": {"server": server.agent_url,
                            "certificate-authority-data": base64.b64encode(
                                server.ca.read_bytes()).decode()},
                "authentication": {"client-certificate-data": base64.b64encode(cert).decode(),
                                   "client-key-data": base64.b64encode(key).decode()},
                "enrollment-ui-endpoint": server.url},
            "spec-fetch-interval": "0m2s", "status-update-interval": "0m2s",
            "status-update-jitter": "0s", "enrollment-verify-interval": "2s",
            "pull-timeout": "2m", "log-level": "debug",
            "system-info": ["hostname", "kernel", "distroName"],
            **(extra_config or {})}
        self.config_file = root / "etc/flightctl/config.yaml"
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config))
        path = [str(STANDINS / "systemd")]
        if bootc:
            path.insert(0, str(STANDINS / "bootc"))
        system = (path_without(without, root.parent / f"{root.name}-path") if without
                  else os.environ.get("PATH", ""))
        self.env = {**os.environ, **(env or {}), "FLIGHTCTL_TEST_ROOT_DIR": str(root),
                    "PATH": ":".join(path + [system]), "PYTHONUNBUFFERED": "1"}
        self.env.pop("FLIGHTCTL_AGENT_PID", None)
        self.log_path = root.parent / f"{root.name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._stopped = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._name: str | None = None

    def start(self) -> AgentProcess:
        self._stopped.clear()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._stopped.is_set():
            with open(self.log_path, "a") as log:
                self.process = subprocess.Popen(
                    [BIN / "flightctl-agent", "--config", str(self.config_file)],
                    env=self.env, stdout=log, stderr=subprocess.STDOUT)
                self.starts += 1
                self.process.wait()
            self._stopped.wait(0.5)

    def kill(self, sig=signal.SIGKILL) -> None:
        """Signal the current process; the supervisor starts a new one."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)

    def crash(self) -> None:
        """SIGKILL the agent and start no new one (a device that lost power)."""
        self._stopped.set()
        self.kill()
        if self.process:
            self.process.wait(30)

    def stop(self) -> None:
        self._stopped.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._supervisor:
            self._supervisor.join(30)

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    @property
    def name(self) -> str:
        if self._name is None:
            # The URL the agent printed, else (console banner disabled) its banner file.
            banner = self.path("/etc/issue.d/flightctl-banner.issue")

            def found():
                text = self.log() + (banner.read_text() if banner.exists() else "")
                return ENROLL_URL.findall(text)
            self._name = wait_for(found, 60, what="enrollment URL of the agent")[-1]
        return self._name

    def enroll(self, labels: dict | None = None) -> str:
        self.server.approve(self.name, labels)
        wait_for(lambda: (self.path("/var/lib/flightctl/certs/agent.crt").exists()
                          and self.status().get("systemInfo")), 60, what="enrolled agent status")
        return self.name

    def path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def maps_library(self, package: str) -> bool:
        """Whether the running agent process has a file of ``package`` mapped (its compiled
        extension: loaded once imported, and never unloaded)."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_text()
        return f"/{package}/" in maps

    def status(self) -> dict:
        return (self.server.device(self.name) or {}).get("status") or {}

    def condition(self, type_: str = "Updating") -> dict:
        for c in self.status().get("conditions") or []:
            if c.get("type") == type_:
                return c
        return {}

    def wait_rendered_version(self, version: int, timeout: float = 90) -> dict:
        def reached():
            status = self.status()
            if status.get("config", {}).get("renderedVersion") == str(version):
                return status
            return None
        return wait_for(reached, timeout, what=f"renderedVersion {version}")

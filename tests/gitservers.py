"""Real repository servers on 127.0.0.1 for the repository and GitOps tests.

One directory of git repositories is served three ways for the whole session: ``git daemon``
(anonymous), smart HTTP through ``git http-backend`` behind HTTP basic auth, and ``sshd`` with
one authorised key (with a passphrase). Beside them: a plain HTTP file server that wants a
bearer token. Every port is picked free. OCI registries are in ``tests.registries``.

A missing tool fails the test that needs it (with what to install); it never skips.
Use with ``pytest_plugins = ["tests.gitservers"]``.
"""

from __future__ import annotations

import base64
import getpass
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.net import free_port

GIT_USER, GIT_PASSWORD = "gituser", "Git-Pa55-7f3a91"
FILE_TOKEN = "file-token-5e0c27d9b4"
REGISTRY_USER, REGISTRY_PASSWORD = "reguser", "Reg-Pa55-c81d04"
SSH_PASSPHRASE = "ssh-passphrase-2b9e6f"
INSTALL = "run scripts/install-test-deps.sh as root (Debian packages: git, openssh-server, " \
          "apache2-utils, docker-registry)"


def require(tool: str) -> str:
    path = shutil.which(tool) or (tool if os.path.exists(tool) else None)
    if path is None:
        pytest.fail(f"{tool} is needed by this test but is not installed: {INSTALL}")
    return path


def wait_port(port: int, process: subprocess.Popen | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _git(*args, cwd=None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class WorkRepo:
    """A repository the tests commit to; the servers serve it as ``<name>``."""

    path: Path
    name: str

    def commit(self, files: dict[str, str | None], message: str = "change",
               branch: str = "main") -> str:
        """Write (or, with None, delete) files on ``branch`` and commit; return the SHA."""
        if not _git("branch", "--list", cwd=self.path):  # no commit yet
            _git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=self.path)
        elif _git("branch", "--list", branch, cwd=self.path):
            _git("checkout", "-q", branch, cwd=self.path)
        else:
            _git("checkout", "-q", "-b", branch, cwd=self.path)
        for rel, content in files.items():
            target = self.path / rel.lstrip("/")
            if content is None:
                _git("rm", "-q", "-r", rel.lstrip("/"), cwd=self.path)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            _git("add", rel.lstrip("/"), cwd=self.path)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.path)
        return _git("rev-parse", "HEAD", cwd=self.path)


@pytest.fixture(scope="session")
def git_root(tmp_path_factory) -> Path:
    require("git")
    return tmp_path_factory.mktemp("git-served")


_REPO_NUMBERS = itertools.count()


@pytest.fixture
def make_repo(git_root, request):
    def make(name: str | None = None) -> WorkRepo:
        name = name or f"{request.node.originalname[:40]}-{next(_REPO_NUMBERS)}"
        path = git_root / name
        _git("init", "-q", "-b", "main", str(path))
        # Serving a checked-out repository: pushes are not needed, commits land directly.
        return WorkRepo(path, name)

    return make


@pytest.fixture(scope="session")
def git_daemon(git_root) -> str:
    """Base URL of anonymous ``git://`` access to every repository under ``git_root``."""
    require("git")
    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={git_root}",
         "--listen=127.0.0.1", f"--port={port}", str(git_root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    yield f"git://127.0.0.1:{port}/"
    process.terminate()
    process.wait(10)


# -- HTTP: smart git and plain files ------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "test/1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _authorized(self) -> bool:
        wanted = self.server.expected_auth
        if wanted is None or self.headers.get("Authorization") == wanted:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", self.server.challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def _serve(self):
        self.server.requests.append(self.path)
        if not self._authorized():
            return
        if self.server.git_root is not None:
            self._git_backend()
            return
        body = self.server.files.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _git_backend(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.server.git_root),
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
               "QUERY_STRING": query, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": GIT_USER,
               "REMOTE_ADDR": "127.0.0.1", "GIT_CONFIG_NOSYSTEM": "1",
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
        result = subprocess.run(["git", "http-backend"], input=body, env=env,
                                capture_output=True, check=False)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = result.stdout.partition(b"\n\n")
        headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
        status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
        self.send_response(int(status.split()[0]))
        for key, value in headers:
            if key.lower() != "status":
                self.send_header(key, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class HttpServer:
    url: str
    server: ThreadingHTTPServer
    files: dict = field(default_factory=dict)

    @property
    def requests(self) -> list:
        return self.server.requests


def _start_http(expected_auth: str | None, challenge: str, git_root: Path | None):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    server.expected_auth, server.challenge, server.git_root = expected_auth, challenge, git_root
    server.files, server.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return HttpServer(f"http://127.0.0.1:{server.server_address[1]}", server, server.files)


@pytest.fixture(scope="session")
def git_http(git_root):
    """Smart HTTP (``git http-backend``) behind basic auth: ``<url>/<repo name>``."""
    require("git")
    basic = base64.b64encode(f"{GIT_USER}:{GIT_PASSWORD}".encode()).decode()
    server = _start_http(f"Basic {basic}", 'Basic realm="git"', git_root)
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def file_server():
    """Plain HTTP files (``server.files[path] = bytes``) for a bearer token."""
    server = _start_http(f"Bearer {FILE_TOKEN}", 'Bearer realm="files"', None)
    yield server
    server.server.shutdown()


# -- SSH ------------------------------------------------------------------------------------------


@dataclass
class SshServer:
    url: str  # ssh://user@127.0.0.1:port<git_root>/
    private_key_b64: str
    passphrase: str
    known_hosts: Path
    port: int


@pytest.fixture(scope="session")
def ssh_server(git_root, tmp_path_factory):
    """``sshd`` on loopback that lets one key (with a passphrase) run git for this user."""
    sshd = shutil.which("sshd") or require("/usr/sbin/sshd")
    keygen = require("ssh-keygen")
    home = tmp_path_factory.mktemp("sshd")
    os.chmod(home, 0o700)
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(home / "host_key")],
                   check=True)
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", SSH_PASSPHRASE, "-f",
                    str(home / "client_key")], check=True)
    shutil.copy(home / "client_key.pub", home / "authorized_keys")
    port = free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"PidFile {home / 'sshd.pid'}\nAuthorizedKeysFile {home / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(home / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    host_key = (home / "host_key.pub").read_text().split()
    known_hosts = home / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    yield SshServer(
        url=f"ssh://{getpass.getuser()}@127.0.0.1:{port}{git_root}/",
        private_key_b64=base64.b64encode((home / "client_key").read_bytes()).decode(),
        passphrase=SSH_PASSPHRASE, known_hosts=known_hosts, port=port)
    process.terminate()
    process.wait(10)


# -- server-side settings --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def repos_data_dir(settings, tmp_path_factory):
    """A private data dir (encryption key, git mirrors) per test session."""
    settings.DATA_DIR = tmp_path_factory.getbasetemp() / "server-data"
    settings.DATA_DIR.mkdir(exist_ok=True)
    return settings.DATA_DIR

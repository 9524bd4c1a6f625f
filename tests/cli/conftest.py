"""Fixtures for the ``flightctl`` command-line tests: one real server for the whole session.

The server is ``flightctl-server serve`` on free ports with its own data directory and embedded
PostgreSQL (its CA at ``<data>/pki/ca.crt``, admin token at ``<data>/admin-token``). The CLI
runs as the installed console script in a subprocess, with ``HOME`` and the config directory
in a temporary directory so no test touches the user's login.

"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.net import free_port

BIN = Path(sys.executable).parent
FLIGHTCTL = BIN / "flightctl"
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
EXAMPLES = REFERENCE / "examples"


@dataclass
class Server:
    """A running ``flightctl-server serve`` and how to reach it directly."""

    url: str
    ca: Path
    token: str
    data_dir: Path

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the API directly (not through the CLI), to check what the CLI did."""
        headers = {"Authorization": f"Bearer {self.token}",
                   "Flightctl-API-Version": "v1beta1", **kwargs.pop("headers", {})}
        # verify= on each call: REQUESTS_CA_BUNDLE in the environment overrides a session's.
        return requests.request(method, f"{self.url}/api/v1/{path}", headers=headers,
                                verify=str(self.ca), timeout=30, **kwargs)

def _server_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    env["FLIGHTCTL_DATA_DIR"] = str(data_dir)
    # Development aid: run the server from another source tree (e.g. a snapshot while the
    # checkout is mid-edit); the CLI under test always comes from the checkout.
    if os.environ.get("CLI_TEST_SERVER_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["CLI_TEST_SERVER_PYTHONPATH"]
    return env


@contextmanager
def running_server(extra_env: dict | None = None, workers: int = 1):
    """``flightctl-server serve`` on free ports with its own data directory, until the end of
    the block (``extra_env``: more environment for it, e.g. uvicorn's own options as
    ``UVICORN_*`` variables; ``workers``: user API processes)."""
    data_dir = Path(tempfile.mkdtemp(prefix="fctl-cli-server-"))
    port = free_port()
    log = open(data_dir.parent / f"{data_dir.name}.log", "w")
    process = subprocess.Popen(
        [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{port}",
         "--agent-address", f"127.0.0.1:{free_port()}", "--workers", str(workers)],
        env={**_server_env(data_dir), **(extra_env or {})}, stdout=log,
        stderr=subprocess.STDOUT, text=True,
    )
    url = f"https://127.0.0.1:{port}"
    ca = data_dir / "pki" / "ca.crt"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited early with {process.returncode}: "
                                     f"{Path(log.name).read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/healthz", verify=str(ca), timeout=5).status_code == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not come up")
            time.sleep(0.5)
        token = (data_dir / "admin-token").read_text().strip()
        yield Server(url, ca, token, data_dir)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def server():
    with running_server() as running:
        yield running


@dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs the installed ``flightctl`` with a private HOME and config directory."""

    def __init__(self, home: Path, server: Server):
        self.home = home
        self.server = server
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("FLIGHTCTL_", "XDG_CONFIG_HOME", "EDITOR", "VISUAL"))}
        self.env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                         "NO_COLOR": "1"})

    def __call__(self, *args, input: str | None = None, env: dict | None = None,
                 timeout: float = 120) -> Result:
        done = subprocess.run([str(FLIGHTCTL), *map(str, args)], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args, **kwargs) -> str:
        result = self(*args, **kwargs)
        assert result.code == 0, f"flightctl {' '.join(map(str, args))}: {result.err}"
        assert "Traceback" not in result.err
        return result.out

    def login(self) -> None:
        self.ok("login", self.server.url, "--token", self.server.token,
                "--certificate-authority", self.server.ca)

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "flightctl" / "client.yaml"


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    """A logged-in command line."""
    runner = Cli(tmp_path / "home", server)
    runner.home.mkdir()
    runner.login()
    return runner


@pytest.fixture
def fresh_cli(server, tmp_path) -> Cli:
    """A command line that has never logged in."""
    runner = Cli(tmp_path / "home", server)
    runner.home.mkdir()
    return runner


def load_example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _columns(header: str) -> list[int]:
    # Columns start after a run of 2+ spaces (titles such as "LAST SYNC" contain one space).
    return [m.start() for m in re.finditer(r"(?:^|(?<=\s{2}))\S", header)]


def table(text: str) -> list[dict]:
    """Parse a CLI table into one dict per row, keyed by column title."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    starts = _columns(lines[0])
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    titles = [lines[0][s:e].strip() for s, e in bounds]
    return [dict(zip(titles, [line[s:e].strip() for s, e in bounds], strict=True))
            for line in lines[1:]]


def headers(text: str) -> list[str]:
    """The column titles of a CLI table."""
    header = text.splitlines()[0]
    starts = _columns(header)
    return [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]


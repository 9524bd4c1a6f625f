"""A newcomer's first hour, as README.md tells it, on a fresh copy of this checkout.

``make run`` builds its own virtualenv there (only what ``pip install .`` installs: no test
extras, and with compilers and pkg-config shadowed by stand-ins that fail, as on a machine
without build headers or libtss2-dev) and serves on the embedded PostgreSQL. Then:

* an idle minute of that server's console has fewer than 10 lines, and the admin is styled
  (its stylesheets answer 200 and no ``Not Found: /static/`` line is logged);
* every shell block of README.md runs as written, in order, in one shell, in the copy —
  except the first block, ``make run`` / ``make test`` itself: ``make run`` is the server
  these blocks talk to, and ``make test`` is what runs this test.

The test sets only what a reader would have: a home directory, ``FLIGHTCTL_DATA_DIR`` and
``FLIGHTCTL_BASE_URL`` (the README honours both, so the server can use a temporary data
directory and free ports) and ``EDITOR=true`` for ``flightctl edit`` (an edit left unchanged).
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
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.console import admin_session
from tests.net import free_port, wait_for

CHECKOUT = Path(__file__).resolve().parents[1]
IDLE_WINDOW = 75.0  # seconds of an idle server's console that are counted
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.S | re.M)
TWO_COMMANDS = ["make run", "make test"]
NO_BUILD_TOOLS = ("cc", "gcc", "c++", "g++", "x86_64-linux-gnu-gcc", "pkg-config")


@dataclass
class FirstStart:
    clone: Path
    data: Path
    url: str
    ca: Path
    log: Path
    idle_lines: list[str]
    env: dict


def _copy_checkout(into: Path) -> Path:
    """The checkout's files as a fresh clone has them (tracked and new, not ignored: no .venv,
    no caches), with this branch's uncommitted edits."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                            cwd=CHECKOUT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = CHECKOUT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


def _no_build_tools(directory: Path) -> str:
    """Stand-ins for compilers and pkg-config that fail, to prepend to PATH."""
    directory.mkdir()
    for tool in NO_BUILD_TOOLS:
        path = directory / tool
        path.write_text(f"#!/bin/sh\necho '{tool}: not installed on this machine' >&2\nexit 1\n")
        path.chmod(0o755)
    return str(directory)


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


@pytest.fixture(scope="module")
def first_start():
    work = Path(tempfile.mkdtemp(prefix="fctl-first-hour-"))
    clone = _copy_checkout(work / "flightctl")
    data = work / "data"
    port, agent_port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLIGHTCTL_", "DJANGO_", "VIRTUAL_ENV", "PYTHON", "PIP_"))}
    env.update({"HOME": str(work / "home"), "FLIGHTCTL_DATA_DIR": str(data),
                "FLIGHTCTL_BASE_URL": url, "FLIGHTCTL_ADDRESS": f"127.0.0.1:{port}",
                "FLIGHTCTL_AGENT_ADDRESS": f"127.0.0.1:{agent_port}",
                # The system's commands (not this test run's virtualenv), minus build tools.
                "PATH": os.pathsep.join([_no_build_tools(work / "no-build-tools")] + [
                    d for d in env["PATH"].split(os.pathsep) if d != str(Path(sys.executable)
                                                                            .parent)]),
                # pip's cache of downloaded wheels stays the machine's (PyPI is slow to ask).
                "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR")
                or str(Path.home() / ".cache" / "pip")})
    (work / "home").mkdir()
    log = work / "make-run.log"
    with open(log, "w") as out:
        make = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ca = data / "pki" / "ca.crt"

    def serving() -> bool:
        if make.poll() is not None:
            raise AssertionError(f"make run exited with {make.returncode}:\n"
                                 + "\n".join(_lines(log)[-40:]))
        try:
            return requests.get(f"{url}/healthz", verify=str(ca), timeout=5).status_code == 200
        except (OSError, requests.RequestException):
            return False

    try:
        wait_for(serving, 600, interval=1, what="make run to serve")
        time.sleep(10)  # the agent API and the task workers finish starting
        start = len(_lines(log))
        time.sleep(IDLE_WINDOW)
        idle = _lines(log)[start:]
        yield FirstStart(clone, data, url, ca, log, idle, env)
    finally:
        try:
            os.killpg(make.pid, signal.SIGTERM)  # make and serve: its own process group
            make.wait(90)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(make.pid, signal.SIGKILL)
        print("--- make run ---\n" + "\n".join(_lines(log)[-60:]))
        shutil.rmtree(work, ignore_errors=True)


def test_make_run_serves_with_only_the_runtime_dependencies(first_start):
    python = first_start.clone / ".venv" / "bin" / "python"
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, check=True).stdout.lower()
    assert "flightctl==" in installed and "flightctl-agent==" in installed
    for extra in ("tpm2-pytss", "pytest", "ruff"):
        assert f"{extra}==" not in installed, f"make run installed {extra}"
    log = first_start.log.read_text()
    assert f"export PATH={first_start.clone / '.venv' / 'bin'}:$PATH" in log
    assert "Created user 'admin'" in log and "Flight Control API on" in log


def test_an_idle_server_is_quiet_and_the_admin_is_styled(first_start):
    per_minute = len(first_start.idle_lines) * 60 / IDLE_WINDOW
    assert per_minute < 10, "\n".join(first_start.idle_lines)

    login = requests.get(f"{first_start.url}/admin/login/", verify=str(first_start.ca),
                         timeout=30)
    sheets = re.findall(r'<link rel="stylesheet"[^>]*href="([^"]+)"', login.text)
    assert any(s.endswith("/admin/css/base.css") for s in sheets), sheets
    for sheet in sheets:
        answer = requests.get(f"{first_start.url}{sheet}", verify=str(first_start.ca),
                              timeout=30)
        assert answer.status_code == 200, sheet
        assert answer.headers["Content-Type"].startswith("text/css")
    assert "Not Found: /static/" not in first_start.log.read_text()


def test_every_readme_command_runs_as_written(first_start):
    blocks = SHELL_BLOCK.findall((first_start.clone / "README.md").read_text())
    first = [line.split("#")[0].strip() for line in blocks[0].splitlines()]
    # The one block not run here: it starts the server this test talks to, and this test.
    assert first == TWO_COMMANDS
    script = ["set -eo pipefail"]
    for number, block in enumerate(blocks[1:], start=2):
        script += [f"echo '::: README block {number}'", block]
    env = {**first_start.env, "EDITOR": "true"}
    env.pop("VISUAL", None)
    out = first_start.log.parent / "readme.log"
    with open(out, "w") as handle:
        shell = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=first_start.clone,
                                 env=env, stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            code = shell.wait(600)
        finally:
            # The README leaves its agent running in the background: stop the whole session.
            try:
                os.killpg(shell.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    transcript = out.read_text()
    assert code == 0, transcript[-4000:]
    assert transcript.count("::: README block") == len(blocks) - 1

    # Every example manifest was applied.
    for obj in ("device/kiosk-lobby", "fleet/berlin", "fleet/pos", "repository/demos-https",
                "repository/demos-ssh", "repository/config-server", "repository/quay",
                "resourcesync/demo-fleets"):
        assert re.search(rf"applying {obj}: 201 Created", transcript), obj
    # The agent enrolled, joined fleet berlin and wrote its templated file.
    motd = (first_start.clone / "device" / "etc" / "motd").read_text()
    assert re.fullmatch(r"[0-9a-v]{52} is in berlin \(tier standard\)\.\n", motd), motd
    assert "Rollout of fleet/berlin complete: 1/1 devices updated" in transcript
    # The login the README created works on the web UI, and shows the device's page.
    name = motd.split()[0]
    browser = admin_session(first_start.url, first_start.ca, "me", "change-me")
    page = browser.get(f"{first_start.url}/manage/{name}", verify=str(first_start.ca),
                       timeout=30)
    assert page.status_code == 200 and name in page.text

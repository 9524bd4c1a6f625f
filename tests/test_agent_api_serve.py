"""``flightctl-server serve`` runs the agent API beside the user API, on the same CA."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bench import procs
from tests.test_server_command import BIN, server_env, wait_until_up
from tests.tpm_support import (
    AgentClient,
    AgentServer,
    csr_pem,
    free_port,
    key_pem,
    new_key,
    wait_for_port,
)


def agent_api_workers(root: int, timeout: float = 30) -> list[int]:
    """The agent API's worker processes, once at least two run (they start after the bind)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = []
        for pid in procs.tree(root):
            try:
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
            except OSError:  # a process that ended since the listing
                pass
        if len(workers) >= 2 or time.monotonic() > deadline:
            return workers
        time.sleep(0.2)


def test_serve_starts_the_mutual_tls_agent_api(tmp_path):
    data_dir = tmp_path / "data"
    port, agent_port = free_port(), free_port()
    process = subprocess.Popen(
        [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{port}",
         "--agent-address", f"127.0.0.1:{agent_port}", "--workers", "1"],
        env=server_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base, ca = f"https://127.0.0.1:{port}", data_dir / "pki" / "ca.crt"
    try:
        wait_until_up(f"{base}/healthz", ca, process)
        # The user API answering says nothing about the agent API, a process of its own that
        # binds its port a moment later (CI once got "connection refused" here).
        wait_for_port(agent_port, process, None)
        token = (data_dir / "admin-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        key = new_key()
        created = requests.post(f"{base}/api/v1/certificatesigningrequests", json={
            "apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "bootstrap"},
            "spec": {"request": base64.b64encode(csr_pem(key, "bootstrap").encode()).decode(),
                     "signerName": "enrollment", "usages": ["clientAuth", "CA:false"]},
        }, headers=headers, verify=str(ca), timeout=10)
        assert created.status_code == 201, created.text
        config = requests.get(f"{base}/api/v1/enrollmentconfig", params={"csr": "bootstrap"},
                              headers=headers, verify=str(ca), timeout=10).json()
        service = config["enrollment-service"]
        bundle = tmp_path / "bundle.crt"
        bundle.write_bytes(base64.b64decode(service["service"]["certificate-authority-data"]))
        server = AgentServer(f"https://127.0.0.1:{agent_port}", data_dir, bundle,
                             tmp_path / "none.log", process)
        agent = AgentClient(server, base64.b64decode(
            service["authentication"]["client-certificate-data"]), key_pem(key), tmp_path / "a")
        # Two agent API processes share the port (agent_api_workers' default); every new
        # connection, whichever process accepts it, sees its client certificate.
        workers = agent_api_workers(process.pid)
        assert len(workers) >= 2, workers
        for _ in range(6):  # a new connection each time
            missing = agent.get("/api/v1/enrollmentrequests/nope")
            assert missing.status_code == 404
            assert missing.json()["message"] == 'EnrollmentRequest of name "nope" not found'
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(f"{server.url}/api/v1/enrollmentrequests/nope", verify=str(bundle),
                         timeout=10)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(60)
    assert process.returncode == 0

"""Fixtures of the agent tests: one real server (trusting a software TPM manufacturer) and one
loopback registry per test session.

The server process shares this process's test database, so a test can set a device's rendered
spec through Django (as the renderer will) and wake the agent's long-poll with
``notify_rendered``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from flightctl_agent.podman import AGENT_LABEL, instance_label

from tests.agent.harness import AgentProcess, Registry, Server, podman_containers
from tests.tpm_support import ManufacturerCA, SoftwareTPM


def _database_url(settings: dict) -> str:
    user = quote(settings.get("USER") or "postgres")
    password = f":{quote(settings['PASSWORD'])}" if settings.get("PASSWORD") else ""
    host, port = settings.get("HOST") or "", settings.get("PORT") or ""
    name = quote(settings["NAME"])
    if host.startswith("/"):
        return f"postgresql://{user}{password}@:{port}/{name}?host={quote(host)}"
    return f"postgresql://{user}{password}@{host or '127.0.0.1'}:{port or 5432}/{name}"


@pytest.fixture(scope="package")
def agent_tmp():
    return Path(tempfile.mkdtemp(prefix="fctl-agent-tests-"))


@pytest.fixture(scope="package")
def tpm_manufacturer(agent_tmp):
    """The TPM manufacturer the server trusts (``tpm_ca_files``): swtpm's local CA, created
    with the first EK certificate it issues."""
    ca = ManufacturerCA(agent_tmp / "tpm-manufacturer")
    SoftwareTPM(agent_tmp / "tpm-bootstrap", ca).stop()
    return ca


@pytest.fixture(scope="package")
def session_server(django_db_setup, django_db_blocker, agent_tmp, tpm_manufacturer):
    from django.db import connection

    with django_db_blocker.unblock():
        url = _database_url(connection.settings_dict)
    data_dir = agent_tmp / "server" / "data"
    data_dir.mkdir(parents=True)
    srv = Server(data_dir, url, token="", tpm_ca_files=tpm_manufacturer.ca_files())
    yield srv
    srv.stop()


@pytest.fixture
def server(session_server, transactional_db):
    """The session's server with an API token valid in this test (tables are flushed after
    each test: the data must be committed for the server process to see it)."""
    from django.contrib.auth import get_user_model

    from flightctl.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(
        username="agent-e2e", defaults={"is_staff": True, "is_superuser": True})
    session_server.token = ApiToken.issue(user, "agent end-to-end tests")
    return session_server


@pytest.fixture(scope="package")
def registry(agent_tmp):
    reg = Registry(agent_tmp / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def render(transactional_db):
    """Give a device a new rendered spec (as the renderer will) and wake its agent."""
    from django.db import transaction

    from devices.bulk import notify_rendered
    from devices.models import Device

    def do(name: str, spec: dict) -> int:
        with transaction.atomic():
            device = Device.objects.select_for_update().get(name=name)
            device.spec = spec
            device.rendered_spec = spec
            device.rendered_version += 1
            device.save(update_fields=["spec", "rendered_spec", "rendered_version"])
            notify_rendered(device)
            return device.rendered_version
    return do


@pytest.fixture
def make_agent(server, tmp_path):
    """Start agents in their own roots; all are stopped at the end of the test."""
    agents = []

    def make(name: str = "device", **kwargs) -> AgentProcess:
        agent = AgentProcess(tmp_path / name, server, **kwargs).start()
        agents.append(agent)
        return agent
    yield make
    for agent in agents:
        agent.stop()
        ids = [c["Id"] for c in podman_containers(f"{AGENT_LABEL}={instance_label(agent.root)}")]
        if ids:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True)
        if agent.log_path.exists():
            print(f"--- {agent.log_path.name} ---\n{agent.log()[-6000:]}")

"""The per-process entry points of a deployment (flightctl/cli/deploy_commands.py), each run as
the real ``flightctl-server`` command against this machine's PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import TEST_SERVER_URL
from tests.net import free_port, wait_for

SERVER = str(Path(sys.executable).parent / "flightctl-server")


@pytest.fixture
def fresh_database():
    """An empty database of its own, dropped afterwards."""
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(TEST_SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield TEST_SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(TEST_SERVER_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(data_dir: Path, database_url: str = "", **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    env.update(FLIGHTCTL_DATA_DIR=str(data_dir), **extra)
    if database_url:
        env["FLIGHTCTL_DATABASE_URL"] = database_url
    return env


def run(*args, env, timeout=300):
    return subprocess.run([SERVER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_three_concurrent_migrates_apply_each_migration_exactly_once(tmp_path, fresh_database):
    env = env_for(tmp_path, fresh_database)
    starts = [subprocess.Popen([SERVER, "migrate"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    applied = sum(out.count("Applying ") for out, _ in outputs)
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT app, name, count(*) FROM django_migrations "
                            "GROUP BY app, name").fetchall()
    assert applied == len(rows) > 20
    assert all(count == 1 for _, _, count in rows)
    # One applied everything; the others waited for its lock and found nothing left to do.
    assert sorted(out.count("Applying ") for out, _ in outputs)[:2] == [0, 0]


def test_a_database_of_a_newer_release_is_refused_in_one_line(tmp_path, fresh_database):
    env = env_for(tmp_path, fresh_database)
    assert run("migrate", env=env).returncode == 0
    with psycopg.connect(fresh_database) as conn:
        conn.execute("INSERT INTO django_migrations (app, name, applied) "
                     "VALUES ('devices', '9999_from_a_newer_release', now())")
        before = conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
    refused = run("migrate", env=env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "newer release" in refused.stderr and "devices.9999_from_a_newer_release" in \
        refused.stderr and "downgrades are not supported" in refused.stderr
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0] == before


def _digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_init_pki_creates_the_pki_and_keys_once_and_then_changes_nothing(tmp_path):
    env = env_for(tmp_path / "data")
    first = run("init-pki", env=env)
    assert first.returncode == 0, first.stderr
    assert "PKI created" in first.stderr
    data = tmp_path / "data"
    for name in ("pki/ca.crt", "pki/ca.key", "pki/client-signer.crt", "pki/ca-bundle.crt",
                 "pki/server.crt", "pki/server.key", "secret_key", "encryption.key"):
        assert (data / name).is_file(), name
    for name in ("pki/ca.key", "pki/server.key", "secret_key", "encryption.key"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    before = _digests(data)
    second = run("init-pki", env=env)
    assert second.returncode == 0 and "PKI in place" in second.stderr
    assert _digests(data) == before


def test_init_pki_adopts_the_operators_ca_and_server_certificate(tmp_path):
    # The operator's own CA: made by a first installation, then handed to a second one.
    assert run("init-pki", env=env_for(tmp_path / "theirs")).returncode == 0
    theirs = tmp_path / "theirs" / "pki"
    env = env_for(tmp_path / "data", FLIGHTCTL_CA_CERT_FILE=str(theirs / "ca.crt"),
                  FLIGHTCTL_CA_KEY_FILE=str(theirs / "ca.key"),
                  FLIGHTCTL_TLS_CERT_FILE=str(theirs / "server.crt"),
                  FLIGHTCTL_TLS_KEY_FILE=str(theirs / "server.key"))
    adopted = run("init-pki", env=env)
    assert adopted.returncode == 0, adopted.stderr
    assert f"server certificate {theirs / 'server.crt'}" in adopted.stderr
    ours = tmp_path / "data" / "pki"
    assert not (ours / "ca.key").exists() and not (ours / "server.crt").exists()
    assert (ours / "ca-bundle.crt").read_bytes().startswith((theirs / "ca.crt").read_bytes())


def test_the_api_processes_need_an_external_database(tmp_path):
    for command in ("user-api", "agent-api", "worker"):
        refused = run(command, env=env_for(tmp_path))
        assert refused.returncode == 1
        assert "needs database_url" in refused.stderr and refused.stderr.count("\n") == 1


def test_user_api_agent_api_and_worker_run_in_the_foreground_and_healthcheck_follows(
        tmp_path, fresh_database):
    port, agent_port = free_port(), free_port()
    env = env_for(tmp_path, fresh_database, FLIGHTCTL_ADDRESS=f"127.0.0.1:{port}",
                  FLIGHTCTL_AGENT_ADDRESS=f"127.0.0.1:{agent_port}", FLIGHTCTL_WORKERS="1",
                  FLIGHTCTL_AGENT_API_WORKERS="1")
    assert run("migrate", env=env).returncode == 0
    assert run("healthcheck", env=env).returncode == 1  # nothing listens yet
    processes = [subprocess.Popen([SERVER, command], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
                 for command in ("user-api", "agent-api", "worker")]
    try:
        ca = tmp_path / "pki" / "ca.crt"
        wait_for(lambda: run("healthcheck", env=env, timeout=10).returncode == 0, 90,
                 what="the user API to be healthy")
        assert requests.get(f"https://127.0.0.1:{port}/readyz", verify=str(ca),
                            timeout=5).json() == {"status": "ok"}
        wait_for(lambda: run("healthcheck", "--component", "agent-api", env=env,
                             timeout=10).returncode == 0, 60, what="the agent API")
        # Each command became its server (exec): the PID is the server's own.
        for process in processes:
            assert process.poll() is None
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            assert b"flightctl-server" not in cmdline[1], cmdline
        with psycopg.connect(fresh_database) as conn:  # the worker installed its schedule
            wait_for(lambda: conn.execute("SELECT count(*) FROM django_q_schedule WHERE "
                                          "name = 'flightctl-periodic-watchdog'").fetchone()[0]
                     == 1, 60, what="the worker's schedule")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_a_console_bridge_advertised_with_port_0_is_its_container_name_and_own_port(settings):
    """In the quadlet deployment the user API (one container, several worker processes) is
    reached from the agent API container by name: each process advertises its own port."""
    import asyncio
    import dataclasses

    from devices.console.bridge import Listener

    settings.FLIGHTCTL = dataclasses.replace(settings.FLIGHTCTL,
                                             console_bridge_address="127.0.0.1:0",
                                             console_bridge_advertise="flightctl-api:0")

    async def start() -> tuple[str, int]:
        listener = Listener()
        address = await listener.start()
        port = listener._server.sockets[0].getsockname()[1]
        listener._server.close()
        return address, port

    address, port = asyncio.run(start())
    assert address == f"flightctl-api:{port}" and port > 0

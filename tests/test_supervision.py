"""``serve``'s processes die with their supervisor, and a restart right after a kill works.

Real processes on the embedded PostgreSQL; /proc says what is still running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench import procs
from tests.net import free_port, wait_for
from tests.test_agent_api_serve import agent_api_workers
from tests.test_server_command import BIN, _is_zombie, get, server_env


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Serve:
    """One ``flightctl-server serve`` on a data directory and two fixed ports."""

    def __init__(self, data_dir: Path, port: int, agent_port: int, log: Path):
        self.data_dir, self.port, self.agent_port, self.log = data_dir, port, agent_port, log
        self.process: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{self.port}",
                 "--agent-address", f"127.0.0.1:{self.agent_port}", "--workers", "1"],
                env=server_env(self.data_dir), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self.process

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")
        try:
            healthy = get(f"https://127.0.0.1:{self.port}/healthz",
                          self.data_dir / "pki" / "ca.crt").status_code == 200
        except OSError:
            return False
        return healthy and accepts(self.agent_port)

    def wait_up(self, timeout: float = 90) -> float:
        started = time.monotonic()
        wait_for(self.up, timeout, 0.05, what="serve to answer on both ports")
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def serve(tmp_path):
    server = Serve(tmp_path / "data", free_port(), free_port(), tmp_path / "serve.log")
    server.start()
    server.wait_up()
    yield server
    server.stop()
    # Whatever the test did, nothing of the installation may be left running.
    subprocess.run([BIN / "flightctl-server", "migrate"], env=server_env(server.data_dir),
                   capture_output=True, timeout=120)


def test_a_killed_agent_api_master_takes_its_workers_along_and_is_restarted(serve):
    master = next(pid for pid in procs.tree(serve.process.pid)
                  if "-m agent_api" in procs.command(pid))
    workers = agent_api_workers(master)
    assert len(workers) >= 2, workers
    os.kill(master, signal.SIGKILL)
    # Orphaned workers kept port 7443 for good and answered 500; now they die with the master.
    wait_for(lambda: not any(alive(pid) for pid in workers), 5, 0.05,
             what=f"the agent API's workers {workers} to end with their master")
    wait_for(lambda: any("-m agent_api" in procs.command(pid) and pid != master
                         for pid in procs.tree(serve.process.pid)), 5, 0.05,
             what="serve to restart the agent API")
    wait_for(serve.up, 10, 0.05, what="the restarted agent API")


def test_a_restart_right_after_a_kill_succeeds_within_five_seconds(serve):
    first = procs.tree(serve.process.pid)
    serve.process.kill()
    serve.process.wait()
    started = time.monotonic()
    serve.start()  # at once: the killed serve's children are still stopping

    def restarted():
        # The old processes answer on the ports until the new serve has stopped them.
        return not [pid for pid in first if alive(pid)] and serve.up()
    wait_for(restarted, 30, 0.05, what="the new serve, with every process of the old gone")
    took = time.monotonic() - started
    assert took < 5, f"restart took {took:.1f}s"
    # The database the new serve runs on is stopped when it stops, not by the failed attempt.
    serve.stop()
    assert serve.process.returncode == 0, serve.log.read_text()
    pid_file = serve.data_dir / "postgres" / "postmaster.pid"
    wait_for(lambda: not pid_file.exists(), 20, 0.2, what="the embedded PostgreSQL to stop")


def test_a_second_serve_is_refused_without_touching_the_running_one(serve, tmp_path):
    second = Serve(serve.data_dir, free_port(), free_port(), tmp_path / "second.log")
    second.start().wait(60)
    assert second.process.returncode != 0
    assert "another flightctl-server serve" in second.log.read_text()
    assert serve.up()  # its database and ports untouched
    assert (serve.data_dir / "postgres" / "postmaster.pid").exists()


def test_stale_processes_are_killed_only_when_they_are_ours(tmp_path):
    """The record of a killed serve names process groups; a group id recycled by another
    program's process is left alone (its environment names no data directory of ours)."""
    from flightctl.supervision import RunLock

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ours = subprocess.Popen(["sleep", "60"], start_new_session=True,
                            env={**os.environ, "FLIGHTCTL_DATA_DIR": str(data_dir)})
    theirs = subprocess.Popen(["sleep", "60"], start_new_session=True,
                              env={**os.environ, "FLIGHTCTL_DATA_DIR": str(tmp_path / "x")})
    try:
        RunLock(data_dir).record({"agent-api": ours.pid, "tasks": theirs.pid})
        lock = RunLock(data_dir)
        assert lock.acquire() == [ours.pid]
        assert ours.wait(5) == -signal.SIGKILL
        assert theirs.poll() is None
        with pytest.raises(Exception, match="another flightctl-server serve"):
            RunLock(data_dir).acquire()
        lock.release()
    finally:
        for process in (ours, theirs):
            if process.poll() is None:
                process.kill()
                process.wait()

"""``flightctl rollout``: the status computed from a fleet and its devices, watched live."""

from __future__ import annotations

import subprocess
import threading
import time

from flightctl.cli.client.commands.rollout import rollout_state
from tests.cli.conftest import FLIGHTCTL, Cli, running_server


def fleet(reason: str | None = None, message: str = "", annotations: dict | None = None,
          batches: int = 0, current: int | None = None) -> dict:
    obj = {"metadata": {"name": "f", "annotations": annotations or {}},
           "spec": {"template": {"spec": {}}}, "status": {"conditions": []}}
    if reason:
        obj["status"]["conditions"].append({"type": "RolloutInProgress", "reason": reason,
                                            "status": str(reason == "Active"),
                                            "message": message})
    if batches:
        obj["spec"]["rolloutPolicy"] = {"deviceSelection": {
            "strategy": "BatchSequence", "sequence": [{"limit": 1}] * batches}}
    if current is not None:
        obj["status"]["rollout"] = {"currentBatch": current}
    return obj


def member(updated: str = "OutOfDate", error: bool = False) -> dict:
    device = {"metadata": {"annotations": {}}, "status": {"updated": {"status": updated},
                                                          "conditions": []}}
    if error:
        device["status"]["conditions"].append({"type": "Updating", "status": "False",
                                               "reason": "Error", "message": "boom"})
    return device


def test_rollout_phases_from_fleet_condition_and_members():
    done = rollout_state(fleet("Inactive"), [member("UpToDate")] * 3)
    assert (done.phase, done.updated, done.total, done.percent) == ("complete", 3, 3, 100)
    assert rollout_state(fleet(), []).phase == "complete"  # an empty fleet has nothing to do

    active = rollout_state(fleet("Active", "Rolling out batch 1", batches=2, current=1),
                           [member("UpToDate"), member("Updating"), member()])
    assert (active.phase, active.updated, active.updating, active.batch, active.batches) == (
        "rolling out", 1, 1, 1, 3)
    assert "batch 1 of 3" in active.line("f") and "33%" in active.line("f")

    assert rollout_state(fleet("Waiting"), [member()]).phase == "waiting for approval"
    paused = fleet("Suspended", "Rollout is paused", {"fleet-controller/rolloutPaused": "true"})
    assert rollout_state(paused, [member()]).phase == "paused"
    failed = rollout_state(fleet("Suspended", "batch 1 failed: 0% of devices were updated"),
                           [member(error=True), member("UpToDate")])
    assert (failed.phase, failed.failed) == ("failed", 1)
    assert "0% of devices" in failed.message
    # No batched rollout, every member either updated or failed: the rollout failed.
    assert rollout_state(fleet("Inactive"), [member("UpToDate"), member(error=True)]
                         ).phase == "failed"
    # Devices still waiting for their update: not finished.
    assert rollout_state(fleet("Inactive"), [member("UpToDate"), member()]).phase == "pending"
    assert rollout_state(fleet("Inactive"), [member("Updating")]).phase == "rolling out"
    # A device the fleet selects but the server has not yet made a member: not done yet.
    waiting = rollout_state(fleet("Inactive"), [], joining=1)
    assert (waiting.phase, waiting.total, waiting.percent) == ("pending", 1, 0)


def agent_report(device: dict, state: str, failed: bool = False) -> dict:
    """The status a real agent would send: ``Updating`` while applying, then the rendered
    version and OS image it runs (the server derives ``status.updated`` from these)."""
    annotations = device["metadata"].get("annotations") or {}
    rendered = annotations.get("device-controller/renderedVersion", "")
    image = ((device.get("spec") or {}).get("os") or {}).get("image", "")
    status = dict(device.get("status") or {})
    status["summary"] = {"status": "Online", "info": ""}
    condition = {"type": "Updating", "status": "True", "reason": "ApplyingUpdate",
                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if state == "UpToDate":
        condition.update(status="False", reason="Updated")
        status["config"] = {"renderedVersion": rendered}
        status["os"] = {"image": image, "imageDigest": ""}
    if failed:
        condition.update(status="False", reason="Error", message="While ApplyingUpdate: boom")
    status["conditions"] = [condition]
    return {**device, "status": status}


def simulated_agents(server, names, stop: threading.Event, fail: str | None = None,
                     pace: float = 0.8):
    """Agents that, one device at a time, report Updating and then UpToDate (or failure),
    ``pace`` seconds apart."""
    def run():
        for name in names:
            for state in ("Updating", "UpToDate"):
                if stop.wait(pace):
                    return
                device = server.api("GET", f"devices/{name}").json()
                report = agent_report(device, state, failed=name == fail and state == "UpToDate")
                server.api("PUT", f"devices/{name}/status", json=report)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def make_fleet(server, name: str, count: int, policy: dict | None = None) -> list[str]:
    spec = {"selector": {"matchLabels": {"rollout": name}},
            "template": {"spec": {"os": {"image": "quay.io/org/os:1"}}}}
    if policy:
        spec["rolloutPolicy"] = policy
    server.api("PUT", f"fleets/{name}", json={
        "apiVersion": "flightctl.io/v1beta1", "kind": "Fleet", "metadata": {"name": name},
        "spec": spec})
    names = [f"{name}-dev-{i}" for i in range(count)]
    for device in names:
        server.api("PUT", f"devices/{device}", json={
            "apiVersion": "flightctl.io/v1beta1", "kind": "Device",
            "metadata": {"name": device, "labels": {"rollout": name}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the server assigns members to the fleet
        owned = server.api("GET", "devices", params={
            "fieldSelector": f"metadata.owner=Fleet/{name}"}).json()["items"]
        if len(owned) == count:
            return names
        time.sleep(0.3)
    raise AssertionError("devices never joined the fleet")


def cleanup(cli, names: list[str]) -> None:
    cli("delete", "devices", *names)
    cli("delete", "fleet/" + names[0].rsplit("-dev-", 1)[0])


def watch(cli, name: str, interval: float = 0.3) -> subprocess.CompletedProcess:
    return subprocess.run([str(FLIGHTCTL), "rollout", "status", f"fleet/{name}", "--watch",
                           "--interval", str(interval), "--timeout", "90"], env=cli.env,
                          capture_output=True, text=True, timeout=120)


def test_watch_a_rollout_to_completion(server, cli):
    names = make_fleet(server, "cli-roll", 3)
    stop = threading.Event()
    agents = simulated_agents(server, names, stop)
    try:
        result = watch(cli, "cli-roll")
        again = cli("rollout", "status", "fleet/cli-roll")  # without --watch: one look
    finally:
        stop.set()
        agents.join()
        cleanup(cli, names)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "Rollout of fleet/cli-roll complete: 3/3 devices updated" in lines[-1]
    progress = [line for line in lines if line.startswith("fleet/cli-roll: ")]
    assert len(progress) >= 2  # it showed the rollout moving, not just the end
    assert any("updating 1" in line for line in progress)
    assert "[" + "#" * 30 + "] 100%" in progress[-1]
    assert again.code == 0 and "complete" in again.out


def test_a_failed_device_fails_the_watch(server, cli):
    names = make_fleet(server, "cli-fail", 2)
    stop = threading.Event()
    agents = simulated_agents(server, names, stop, fail=names[1])
    try:
        result = watch(cli, "cli-fail")
    finally:
        stop.set()
        agents.join()
        cleanup(cli, names)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Rollout of fleet/cli-fail failed" in result.stderr
    assert "failed 1" in result.stdout.splitlines()[-1]


def test_pause_resume_and_approve_a_rollout(server, cli):
    names = make_fleet(server, "cli-steer", 2, policy={"deviceSelection": {
        "strategy": "BatchSequence", "sequence": [{"limit": 1}]}})
    try:
        deadline = time.monotonic() + 60
        while not server.api("GET", "fleets/cli-steer/templateversions").json().get("items"):
            assert time.monotonic() < deadline, "no TemplateVersion: no rollout to steer"
            time.sleep(0.3)

        def annotations() -> dict:
            fleet = server.api("GET", "fleets/cli-steer").json()
            return fleet["metadata"].get("annotations") or {}

        assert "paused" in cli.ok("rollout", "pause", "fleet/cli-steer")
        assert annotations().get("fleet-controller/rolloutPaused") == "true"
        status = cli("rollout", "status", "fleet/cli-steer")
        assert status.code == 3 and "paused" in status.out and "rollout resume" in status.err
        cli.ok("rollout", "resume", "fleet/cli-steer")
        assert "fleet-controller/rolloutPaused" not in annotations()
        approved = cli("rollout", "approve", "flt/cli-steer")
        # Approving is for a batch that waits; otherwise the server says why not, in one line.
        assert approved.code == 0 or len(approved.err.strip().splitlines()) == 1
        refused = cli("rollout", "pause", "device/x")
        assert refused.code != 0 and "fleets" in refused.err
    finally:
        cli("delete", "devices", *names)
        cli("delete", "fleet/cli-steer")


def test_a_watch_outlives_a_server_that_closes_idle_connections(tmp_path):
    """A load balancer or the server closes keep-alive connections idle for 1 s; the watch polls
    every second, so its next request often races the close. A 30 s rollout is watched to the
    end (exit 0), not reported as failed (exit 1) because a connection was dropped."""
    with running_server({"UVICORN_TIMEOUT_KEEP_ALIVE": "1"}) as server:
        cli = Cli(tmp_path / "home", server)
        cli.home.mkdir()
        cli.login()
        names = make_fleet(server, "cli-keepalive", 6)
        stop = threading.Event()
        started = time.monotonic()
        agents = simulated_agents(server, names, stop, pace=2.5)
        try:
            result = watch(cli, "cli-keepalive", interval=1.0)
        finally:
            stop.set()
            agents.join()
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started >= 25  # it watched the whole rollout
        assert "Rollout of fleet/cli-keepalive complete: 6/6 devices updated" in result.stdout
        assert "Traceback" not in result.stderr

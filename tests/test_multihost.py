"""Several server hosts on one PostgreSQL cluster, behind HAProxy (docs/deploy-multihost.md).

It runs the real thing (``python -m bench.multihost``, bench/cluster.py): hosts of their own in
network namespaces the run makes with ``ip netns`` (one private network, nothing leaves the
machine), a PostgreSQL primary and a synchronous streaming standby, two nodes running
``flightctl-server serve`` joined with ``cluster-bundle``/``join``, HAProxy with
deploy/haproxy/haproxy.cfg and 200 simulated devices. It asserts correctness, and prints the
timings: a change made through node 1 reaches every device held by node 2 through its waiting
long-poll; node 2's host SIGKILLed, every device reports again through node 1 with nothing
acknowledged lost; the primary killed and the standby promoted, the nodes carry on without a
restart; node 1 stopped cleanly, its devices move over without a single 5xx. Console sessions
cross nodes: the user's WebSocket on node 1, the device's stream on node 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 200
INTERVAL = 10

pytestmark = pytest.mark.multihost
pytest.importorskip("aiohttp", reason="the device simulator needs the 'simulator' extra")


def test_nodes_behind_haproxy_survive_a_node_kill_a_database_failover_and_a_stop(tmp_path):
    assert os.geteuid() == 0, "network namespaces (ip netns) need root"
    output = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.multihost", "--devices", str(DEVICES),
         "--status-interval", str(INTERVAL), "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = json.loads(output.read_text()) if output.exists() else {}
    print(json.dumps(report, indent=2))
    assert result.returncode == 0, (report.get("failed"), result.stderr[-3000:])
    assert report["bundle_mode"] == "0o600"

    # Node 1 took no device connections; a change PUT through it reached all 200 (held by
    # node 2) through their long-polls, each after its render in the database.
    assert report["held"]["node1"] == 0 and report["held"]["node2"] >= DEVICES
    change = report["change_via_node1"]
    assert change["devices"] == DEVICES and change["after_render"]["devices"] == DEVICES
    assert change["node2_task_processes_paused"] > 0  # so node 1's workers rendered it
    # Consoles: the user's WebSocket on node 1, the device's stream on node 2, bridged.
    consoles = report["console_across_nodes"]
    assert consoles["errors"] == [] and consoles["to_user"] >= 2 and consoles["to_device"] >= 2
    assert consoles["bridges"] == [report["addresses"]["node1"]]

    # Node 2's host killed: HAProxy marks it down, every device reports through node 1.
    kill = report["kill_node2"]
    assert kill["node2_in_haproxy"] == "DOWN"
    assert kill["held"]["node2"] == 0 and kill["held"]["node1"] >= DEVICES
    assert kill["lost_status_reports"] == 0 and kill["lost_user_writes"] == 0
    assert not [k for k in kill["device_errors"] if k.rsplit(" ", 1)[-1].startswith("5")]

    # The primary killed, the standby promoted: no node restarted, nothing acknowledged lost
    # (status reports are committed synchronously to the standby), a rollout reaches everyone.
    failover = report["failover"]
    assert failover["nodes_restarted"] == []
    assert failover["lost_status_reports"] == 0 and failover["lost_user_writes"] == 0
    assert failover["rollout_after"]["devices"] == DEVICES
    assert not [k for k in failover["device_errors"] if not k.endswith((" 503", "connection"))]

    # Node 1 stopped cleanly: its devices move to node 2 and never see a 5xx.
    stop = report["stop_node1"]
    assert stop["held_before"] >= DEVICES and stop["held_after"]["node2"] >= DEVICES
    assert not [k for k in stop["device_errors"] if k.rsplit(" ", 1)[-1].startswith("5")]
    assert stop["lost_status_reports"] == 0 and stop["lost_user_writes"] == 0
    assert report["user_writes_acknowledged"] > 0

    print(f"render -> device held by node 2: p50 {change['after_render']['p50_ms']} ms, "
          f"max {change['after_render']['max_ms']} ms; node 2 killed: all reporting again after "
          f"{kill['reporting_again_seconds']} s (status interval {INTERVAL} s); promote "
          f"{failover['promote_seconds']} s, all reporting again after "
          f"{failover['reporting_again_seconds']} s; node 1 stop {stop['stop_seconds']} s, all "
          f"reporting again after {stop['reporting_again_seconds']} s")

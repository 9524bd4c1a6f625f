"""Scale: a short benchmark run with 200 simulated devices is part of the suite.

It runs the real thing (``python -m bench.run``): embedded PostgreSQL, ``flightctl-server
serve``, ``flightctl-agent simulate`` with 200 devices that enroll through the agent API and
are approved through the user API, a fleet owning them all and a template change, then an
enrollment storm: 100 more devices enrolling at once through an admission queue kept small,
so that some are told to come back later (503 + Retry-After). It asserts correctness, not
timings: every device enrolled, no request failed, the fleet converged, and the connected
devices saw no error while the storm enrolled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("aiohttp", reason="the device simulator needs the 'simulator' extra")


def test_two_hundred_simulated_devices_enroll_report_and_converge_without_errors(tmp_path):
    output = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--devices", "200", "--status-interval", "10",
         "--window", "10", "--quick", "--enroll-timeout", "150", "--rollout-timeout", "90",
         "--storm", "100", "--storm-concurrency", "100", "--enrollment-queue", "4",
         "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=420)
    report = json.loads(output.read_text()) if output.exists() else {}
    assert result.returncode == 0, (report.get("failed"), report or result.stdout[-3000:],
                                    result.stderr[-3000:])
    assert report["simulator"]["enrolled"] == 200
    assert report["simulator"]["errors_total"] == 0, report["simulator"]["error_samples"]
    assert report["steady_state"]["errors"] == 0
    assert report["steady_state"]["operations"]["status.put"]["count"] > 0
    # every device received the new template and reported it (the fleet is UpToDate)
    assert report["rollout_convergence_seconds"] > 0
    # ... each through its waiting long-poll, set against the render's time in the database
    assert report["rendered_delivery"]["devices"] == 200
    # the storm: all 100 enrolled (the run waits for it), none failed, and the 200 connected
    # devices kept reporting and long-polling without a single error meanwhile
    storm = report["storm"]
    assert storm["storm_errors"] == 0, storm["storm_error_samples"]
    assert storm["connected"]["errors"] == 0
    assert storm["connected"]["operations"]["status.put"]["count"] > 0

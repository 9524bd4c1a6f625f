"""The fault suite: each process of a loaded server killed in turn, and a clean stop.

Real processes: a PostgreSQL of the suite's own, ``flightctl-server serve`` on it, 200 simulated
devices reporting every 15 s and a user API writer (bench/faults.py, which also runs it longer).
Each fault is followed by a restart (by ``serve`` of its child, or by the run, playing the
service manager, of ``serve`` and PostgreSQL). The figures go to docs/reliability.md.
"""

from __future__ import annotations

import json

import pytest

from bench import faults

pytestmark = pytest.mark.faults

DEVICES = 200
STATUS_INTERVAL = 15.0
#: From the kill to both ports answering through new processes. The goal is 5 s, a figure that
#: bench/faults.py prints (docs/reliability.md); this bound only catches a restart that hangs or
#: waits for a timeout: on a loaded 2-core machine a restart of the whole ``serve`` (Django
#: imported by four processes at once) took 7.4 s once.
RESTART_SECONDS = 15.0
#: a clean stop: the goal is 2 s (the figure), the bound catches a stop that waits for a timeout
STOP_SECONDS = 10.0
#: a device reports every interval +-10 %; the simulator's stats file is rewritten every 2 s
REPORT_BOUND = STATUS_INTERVAL * 1.1 + 1


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from flightctl_agent.simulator.run import raise_file_limit

    raise_file_limit()
    work = tmp_path_factory.mktemp("faults")
    run = faults.FaultRun(faults.arguments([
        "--devices", str(DEVICES), "--status-interval", str(STATUS_INTERVAL),
        "--work-dir", str(work)]))
    try:
        result = run.run()
    finally:
        run.stop()
    (work / "report.json").write_text(json.dumps(result, indent=2))
    return {fault["fault"]: fault for fault in result["faults"]} | {"_all": result}


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_each_fault_is_followed_by_a_restart_and_leaves_no_orphan(
        report, fault):
    result = report[fault]
    assert result["restart_seconds"] < RESTART_SECONDS, result
    assert result["orphans"] == [], result


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_every_device_reports_again_within_one_status_interval(report, fault):
    result = report[fault]
    assert result["reporting_again_seconds"] <= REPORT_BOUND, result


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_no_acknowledged_write_is_lost_and_no_device_gets_a_500(report, fault):
    result = report[fault]
    assert result["lost_status_reports"] == 0, result
    assert result["lost_user_writes"] == 0, result
    assert result["device_500s"] == 0, result
    assert "500" not in result["user_write_errors"], result
    assert report["_all"]["user_writes_acknowledged"] > 100


def test_a_clean_stop_answers_waiting_long_polls_and_ends_within_seconds(report):
    result = report["stop-serve"]
    # It took ~24 s and answered every waiting long-poll with 500 (the database went first).
    assert result["stop_seconds"] < STOP_SECONDS, result
    assert result["long_polls_answered_204"] >= DEVICES * 0.9, result
    assert not any(code.endswith((" 500", " 503")) for code in result["device_errors"]), result


def test_a_database_outage_costs_retries_with_spread_out_delays_not_errors(report):
    result = report["kill-postgres"]
    answers = result["user_api_during_outage"]
    assert all(code == 503 and kind == "Status" and retry.isdigit()
               for code, retry, kind in answers), answers
    assert len({retry for _, retry, _ in answers}) > 1, answers  # jitter
    assert result["device_500s"] == 0, result
    # The listener reconnected: a rollout after the outage reached every waiting long-poll.
    assert result["rollout_seconds"] < 60, result


def test_a_restarted_task_cluster_does_its_work(report):
    assert report["kill-task-cluster"]["rollout_seconds"] < 60, report["kill-task-cluster"]

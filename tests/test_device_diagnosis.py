"""Why a device is not at its target, in words (fleets/progress.py): each stage where a rollout
can hold a device back has its own sentence on the device's page."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from devices.models import Device
from fleets.models import Fleet
from fleets.progress import explain
from flightctl.api import annotations as keys

NOW = timezone.now()
BATCHES = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": 1}]}}


def fleet(annotations=None, policy=None, condition=None) -> Fleet:
    status = {"conditions": [{"type": "Valid", "status": "True"}]}
    if condition:
        status["conditions"].append({"type": "RolloutInProgress", **condition})
    return Fleet(name="edge", spec={"rolloutPolicy": policy} if policy else {},
                 annotations={keys.TEMPLATE_VERSION: "v2", **(annotations or {})}, status=status)


def device(*, reported="3", rendered=3, annotations=None, updating=None, seen=NOW,
           summary="Online", rendered_spec=None) -> Device:
    conditions = [{"type": "Updating", **updating}] if updating else []
    return Device(name="d1", owner="Fleet/edge", last_seen=seen, rendered_version=rendered,
                  rendered_spec=rendered_spec or {},
                  annotations={keys.TEMPLATE_VERSION: "v2", keys.RENDERED_TEMPLATE_VERSION: "v2",
                               **(annotations or {})},
                  status={"summary": {"status": summary}, "config": {"renderedVersion": reported},
                          "conditions": conditions})


def reasons(d: Device, f: Fleet | None) -> str:
    return " ".join(explain(d, f, now=NOW)["reasons"])


def test_a_device_running_its_fleets_template_is_at_its_target():
    result = explain(device(), fleet(), now=NOW)
    assert result["atTarget"]
    assert result["reasons"] == ["The device runs its target: rendered version 3 from "
                                 "template version v2."]


def test_a_device_outside_the_current_batch_waits_for_a_later_one():
    d = device(annotations={keys.TEMPLATE_VERSION: "v1"})
    f = fleet({keys.BATCH_NUMBER: "0"}, BATCHES, {"status": "True", "reason": "Active"})
    assert "outside the current rollout batch (batch 1) of v2" in reasons(d, f)


def test_a_paused_rollout_says_so_and_how_to_go_on():
    d = device(annotations={keys.TEMPLATE_VERSION: "v1"})
    f = fleet({keys.BATCH_NUMBER: "0", keys.ROLLOUT_PAUSED: "true"}, BATCHES)
    assert "paused at batch 1; resume it to continue" in reasons(d, f)


def test_a_selected_device_of_a_batch_waiting_for_approval():
    d = device(annotations={keys.TEMPLATE_VERSION: "v1", keys.SELECTED_FOR_ROLLOUT: ""})
    f = fleet({keys.BATCH_NUMBER: "0"}, BATCHES, {"status": "False", "reason": "Waiting"})
    assert "in batch 1 of the rollout of v2, which waits for approval" in reasons(d, f)


def test_a_template_that_cannot_be_applied_names_the_error():
    d = device(annotations={keys.TEMPLATE_VERSION: "v1", keys.LAST_ROLLOUT_ERROR: "no label site"})
    assert "could not be applied to this device: no label site" in reasons(d, fleet())


def test_a_new_spec_held_back_by_the_disruption_budget():
    d = device(annotations={keys.RENDERED_TEMPLATE_VERSION: "v1"})
    f = fleet(policy={"disruptionBudget": {"maxUnavailable": 2, "groupBy": ["site"]}})
    assert "disruption budget (at most 2 updating at once per site)" in reasons(d, f)


def test_a_disconnected_device_picks_up_its_spec_when_it_returns():
    d = device(reported="2", seen=NOW - datetime.timedelta(minutes=42), summary="Unknown")
    assert "disconnected (last seen 42m ago)" in reasons(d, fleet())


def test_a_failed_update_attempt_shows_the_agents_error():
    d = device(reported="2", updating={"status": "False", "reason": "Error",
                                       "message": "applications failed: web"})
    assert "The last update attempt failed: applications failed: web" in reasons(d, fleet())


def test_an_update_window_holds_the_new_version():
    d = device(reported="2", rendered_spec={"updatePolicy": {"updateSchedule": {
        "at": "0 2 * * *", "timeZone": "UTC"}}})
    assert "only in its update window (0 2 * * * UTC)" in reasons(d, fleet())


def test_an_update_in_progress_is_named():
    d = device(reported="2", updating={"status": "True", "reason": "ApplyingUpdate"})
    assert "applying rendered version 3 (ApplyingUpdate)" in reasons(d, fleet())


@pytest.mark.parametrize("status", ["Decommissioning", "Decommissioned"])
def test_a_decommissioned_device_takes_no_updates(status):
    d = device()
    d.status["lifecycle"] = {"status": status}
    assert reasons(d, fleet()) == f"The device is {status.lower()}: it takes no further updates."


def test_a_fleet_without_a_valid_template_version():
    f = fleet()
    f.annotations = {}
    f.status = {"conditions": [{"type": "Valid", "status": "False", "message": "bad ref"}]}
    assert "no valid template version yet: bad ref" in reasons(device(), f)


def test_a_standalone_device_at_its_rendered_version():
    d = device()
    d.owner = None
    assert explain(d, None, now=NOW)["atTarget"]

"""Fleets at work with real worker processes: ownership, TemplateVersions, batched rollouts."""

from __future__ import annotations

import pytest

from tests.net import wait_for
from tests.workers import task_workers

pytestmark = pytest.mark.django_db(transaction=True)

FLEETS = "/api/v1/fleets"


def make_devices(api, count, labels_of):
    for i in range(count):
        name = f"dev-{i:03d}"
        r = api.put(f"/api/v1/devices/{name}", {"metadata": {"name": name,
                                                             "labels": labels_of(i)}},
                    format="json")
        assert r.status_code == 201


def report(names=None, *, fail=()) -> int:
    """Simulated agents: every device reports Online and the renderedVersion it was given."""
    from devices.models import Device
    from devices.services import record_agent_status

    reported = 0
    queryset = Device.objects.all() if names is None else Device.objects.filter(name__in=names)
    for device in queryset:
        version = str(device.rendered_version) if device.rendered_version else ""
        status = {"summary": {"status": "Online"}, "config": {"renderedVersion": version},
                  "systemInfo": {"architecture": "amd64", "bootID": "b", "agentVersion": "t",
                                 "operatingSystem": "linux"}}
        if device.name in fail and device.rendered_version:
            status["config"]["renderedVersion"] = ""
            status["conditions"] = [{"type": "Updating", "status": "False", "reason": "Error",
                                     "message": "While ApplyingUpdate: boom",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        if (device.status or {}).get("config", {}).get("renderedVersion") != version or (
                (device.status or {}).get("summary", {}).get("status") != "Online"):
            record_agent_status(device, status)
            reported += 1
    return reported


def fleet_body(name="f1", policy=None, image="quay.io/org/os:{{ .metadata.labels.tag }}",
               selector=None):
    spec = {"selector": selector or {"matchLabels": {"fleet": name}},
            "template": {"spec": {"os": {"image": image}}}}
    if policy:
        spec["rolloutPolicy"] = policy
    return {"metadata": {"name": name}, "spec": spec}


def fleet_condition(api, name="f1"):
    body = api.get(f"{FLEETS}/{name}").json()
    return next((c for c in body["status"]["conditions"] if c["type"] == "RolloutInProgress"),
                None)


def batch_reports(api, name="f1"):
    events = api.get("/api/v1/events", {"fieldSelector": "reason=FleetRolloutBatchCompleted,"
                                        f"involvedObject.name={name}", "order": "asc"}).json()
    return [(e["details"]["batch"], e["details"]["total"]) for e in events["items"]]


def test_a_fleet_of_50_rolls_out_in_three_batches_while_agents_report(api, tmp_path):
    make_devices(api, 50, lambda i: {"fleet": "f1", "tag": "v1"})
    report()
    policy = {"deviceSelection": {"strategy": "BatchSequence",
                                  "sequence": [{"limit": 1}, {"limit": "50%"}]}}
    with task_workers(tmp_path):
        from flightctl.tasks import ensure_periodic_jobs

        ensure_periodic_jobs()
        assert api.post(FLEETS, fleet_body(policy=policy), format="json").status_code == 201

        def finished():
            report()
            condition = fleet_condition(api)
            return condition and condition["reason"] == "Inactive" and len(batch_reports(api)) == 3

        wait_for(finished, timeout=120, what="rollout to finish")
    assert batch_reports(api) == [("batch 1", 1), ("batch 2", 24), ("final implicit batch", 25)]
    devices = api.get("/api/v1/devices", {"fieldSelector": "metadata.owner=Fleet/f1"}).json()
    assert len(devices["items"]) == 50
    assert {d["spec"]["os"]["image"] for d in devices["items"]} == {"quay.io/org/os:v1"}
    assert {d["status"]["updated"]["status"] for d in devices["items"]} == {"UpToDate"}
    tvs = api.get(f"{FLEETS}/f1/templateversions").json()
    assert [tv["metadata"]["name"] for tv in tvs["items"]] == ["v1"]
    condition = fleet_condition(api)
    assert condition["status"] == "False" and condition["reason"] == "Inactive"


# -- deterministic scenarios: handlers and ticks driven in-process on the same PostgreSQL ----


def _validate(name="f1"):
    from fleets.tasks import validate_fleet
    from flightctl.models import DEFAULT_ORG_ID

    validate_fleet({"org_id": str(DEFAULT_ORG_ID), "name": name})


def _tick():
    from fleets.tasks import progress_all

    progress_all()


def _match_devices():
    from devices.models import Device
    from devices.tasks import match_device

    for device in Device.objects.all():
        match_device({"org_id": str(device.org_id), "name": device.name})


def test_a_batch_below_its_success_threshold_suspends_until_approved(api):
    make_devices(api, 10, lambda i: {"fleet": "f1", "tag": "v1"})
    report()
    policy = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [
        {"limit": 2, "successThreshold": "100%"}, {"limit": "50%"}]}}
    api.post(FLEETS, fleet_body(policy=policy), format="json")
    _validate()
    from devices.models import Device

    first = list(Device.objects.filter(annotations__has_key="fleet-controller/selectedForRollout")
                 .values_list("name", flat=True))
    assert len(first) == 2
    report(fail=(first[0],))
    _tick()
    condition = fleet_condition(api)
    assert condition["reason"] == "Suspended"
    assert condition["message"] == (
        "batch 1 failed: 50% of devices were updated successfully, success threshold was set "
        "to 100%; Breakdown: total=2 successful=1 failed=1 timed out=0")
    _tick()
    assert Device.objects.filter(rendered_version__gt=0).count() == 2  # nothing more dispatched
    failed = api.get("/api/v1/events", {"fieldSelector": "reason=FleetRolloutFailed"}).json()
    assert len(failed["items"]) == 1
    # Fix the device, then approve: the rollout continues with the next batch.
    report()
    r = api.post(f"{FLEETS}/f1/rollout/approve")
    assert r.status_code == 200
    _tick()
    assert fleet_condition(api)["reason"] == "Active"
    assert Device.objects.filter(rendered_version__gt=0).count() == 5


def test_a_paused_rollout_dispatches_nothing_until_resumed(api):
    make_devices(api, 6, lambda i: {"fleet": "f1", "tag": "v1"})
    report()
    policy = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": 1}]}}
    api.post(FLEETS, fleet_body(policy=policy), format="json")
    assert api.post(f"{FLEETS}/f1/rollout/pause").status_code == 400  # nothing to pause yet
    _validate()
    from devices.models import Device

    assert Device.objects.filter(rendered_version__gt=0).count() == 1
    assert api.post(f"{FLEETS}/f1/rollout/pause").status_code == 200
    for _ in range(3):
        report()
        _tick()
        assert Device.objects.filter(rendered_version__gt=0).count() == 1
        assert fleet_condition(api)["reason"] == "Suspended"
    api.post(f"{FLEETS}/f1/rollout/resume")
    report()
    _tick()
    assert Device.objects.filter(rendered_version__gt=0).count() == 6


def test_manual_approval_waits_for_each_batch(api):
    make_devices(api, 4, lambda i: {"fleet": "f1", "tag": "v1"})
    report()
    policy = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": 1}]}}
    api.post(FLEETS, fleet_body(policy=policy), format="json")
    r = api.put(f"{FLEETS}/f1/rollout/approvalmethod", {"method": "manual"}, format="json")
    assert r.status_code == 200
    assert api.put(f"{FLEETS}/f1/rollout/approvalmethod", {"method": "x"},
                   format="json").status_code == 400
    _validate()
    from devices.models import Device

    condition = fleet_condition(api)
    assert condition["reason"] == "Waiting"
    assert condition["message"] == "Waiting for batch 1 to be approved"
    assert Device.objects.filter(rendered_version__gt=0).count() == 0
    api.post(f"{FLEETS}/f1/rollout/approve")
    _tick()
    assert Device.objects.filter(rendered_version__gt=0).count() == 1


def test_a_disruption_budget_never_updates_two_devices_of_one_site_at_once(api):
    sites = ["berlin", "paris", "rome"]
    make_devices(api, 12, lambda i: {"fleet": "f1", "tag": "v1", "site": sites[i % 3]})
    report()
    policy = {"disruptionBudget": {"groupBy": ["site"], "maxUnavailable": 1}}
    api.post(FLEETS, fleet_body(policy=policy), format="json")
    from devices.models import Device

    def busy_per_site():
        counts = {}
        for device in Device.objects.all():
            reported = (device.status.get("config") or {}).get("renderedVersion")
            if device.rendered_version and reported != str(device.rendered_version):
                site = device.labels["site"]
                counts[site] = counts.get(site, 0) + 1
        return counts

    _validate()
    ticks = 0
    while Device.objects.filter(status__updated__status="UpToDate").count() < 12:
        busy = busy_per_site()
        assert all(n <= 1 for n in busy.values()), busy
        # Only some agents answer each round, so devices stay busy across ticks.
        pending = [d.name for d in Device.objects.all()
                   if d.rendered_version and
                   (d.status.get("config") or {}).get("renderedVersion") != str(
                       d.rendered_version)]
        report(pending[:2])
        _tick()
        ticks += 1
        assert ticks < 40
    assert ticks >= 4  # the budget really serialised the sites


def test_multiple_owners_appear_and_resolve(api):
    make_devices(api, 1, lambda i: {"site": "berlin", "tier": "edge"})
    api.post(FLEETS, fleet_body("a", selector={"matchLabels": {"site": "berlin"}}),
             format="json")
    _validate("a")
    assert api.get("/api/v1/devices/dev-000").json()["metadata"]["owner"] == "Fleet/a"
    api.post(FLEETS, fleet_body("b", selector={"matchLabels": {"tier": "edge"}}), format="json")
    _validate("b")
    device = api.get("/api/v1/devices/dev-000").json()
    assert device["metadata"]["owner"] == "Fleet/a"  # keeps its owner
    condition = next(c for c in device["status"]["conditions"] if c["type"] == "MultipleOwners")
    assert condition["status"] == "True" and condition["message"] == "a,b"
    # Removing the label that b selects resolves it.
    api.put("/api/v1/devices/dev-000", {"metadata": {"name": "dev-000",
                                                     "labels": {"site": "berlin"}}},
            format="json")
    _match_devices()
    device = api.get("/api/v1/devices/dev-000").json()
    condition = next(c for c in device["status"]["conditions"] if c["type"] == "MultipleOwners")
    assert condition["status"] == "False"
    reasons = [e["reason"] for e in api.get("/api/v1/events", {
        "fieldSelector": "involvedObject.name=dev-000", "order": "asc"}).json()["items"]]
    assert "DeviceMultipleOwnersDetected" in reasons and "DeviceMultipleOwnersResolved" in reasons


def test_a_missing_label_fails_only_that_device(api):
    make_devices(api, 3, lambda i: {"fleet": "f1", **({"tag": "v1"} if i else {})})
    report()
    api.post(FLEETS, fleet_body(), format="json")
    _validate()
    bad = api.get("/api/v1/devices/dev-000").json()
    assert "map has no entry for key" in bad["metadata"]["annotations"][
        "fleet-controller/lastRolloutError"]
    spec_valid = next(c for c in bad["status"]["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False"
    for name in ("dev-001", "dev-002"):
        good = api.get(f"/api/v1/devices/{name}").json()
        assert good["spec"]["os"]["image"] == "quay.io/org/os:v1"
        assert good["metadata"]["annotations"]["device-controller/renderedVersion"] == "1"


def test_a_batch_member_whose_template_cannot_be_resolved_fails_its_batch_not_stalls_it(api):
    """The reference would wait for dev-000 forever: it can never render the new version."""
    make_devices(api, 4, lambda i: {"fleet": "f1", **({"tag": "v1"} if i else {})})
    report()
    policy = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [
        {"limit": 2, "successThreshold": "100%"}]}}
    api.post(FLEETS, fleet_body(policy=policy), format="json")
    _validate()
    report()
    _tick()
    condition = fleet_condition(api)
    assert condition["reason"] == "Suspended"
    assert condition["message"].endswith("Breakdown: total=2 successful=1 failed=1 timed out=0")


def test_template_versions_are_listed_newest_first_and_can_be_deleted(api):
    api.post(FLEETS, fleet_body(image="quay.io/org/os:1"), format="json")
    _validate()
    api.put(f"{FLEETS}/f1", fleet_body(image="quay.io/org/os:2"), format="json")
    _validate()
    _validate()  # delivered twice: still one v2
    tvs = api.get(f"{FLEETS}/f1/templateversions").json()
    assert tvs["kind"] == "TemplateVersionList"
    assert [tv["metadata"]["name"] for tv in tvs["items"]] == ["v2", "v1"]
    v2 = api.get(f"{FLEETS}/f1/templateversions/v2").json()
    assert v2["status"]["os"]["image"] == "quay.io/org/os:2"
    assert v2["metadata"]["owner"] == "Fleet/f1"
    assert api.get(f"{FLEETS}/f1").json()["metadata"]["annotations"][
        "fleet-controller/templateVersion"] == "v2"
    assert api.delete(f"{FLEETS}/f1/templateversions/v1").status_code == 200
    assert api.get(f"{FLEETS}/f1/templateversions/v1").status_code == 404
    assert api.get(f"{FLEETS}/nope/templateversions").status_code == 404


def test_a_standalone_device_is_rendered_once_per_distinct_content(api):
    from devices.tasks import render_device

    spec = {"config": [{"name": "a", "inline": [{"path": "/etc/a", "content": "1"}]},
                       {"name": "b", "inline": [{"path": "/etc/b", "content": "2"},
                                                {"path": "/etc/c", "content": "3"}]}]}
    api.put("/api/v1/devices/d1", {"metadata": {"name": "d1"}, "spec": spec}, format="json")
    payload = {"org_id": "00000000-0000-0000-0000-000000000000", "name": "d1"}
    render_device(payload)
    render_device(payload)
    from devices.models import Device

    device = Device.objects.get(name="d1")
    assert device.rendered_version == 1
    assert device.rendered_spec["config"] == [{"inline": [
        {"path": "/etc/a", "content": "1"}, {"path": "/etc/b", "content": "2"},
        {"path": "/etc/c", "content": "3"}]}]
    spec["config"][0]["name"] = "renamed"  # provider names are not part of what agents get
    api.put("/api/v1/devices/d1", {"metadata": {"name": "d1"}, "spec": spec}, format="json")
    render_device(payload)
    assert Device.objects.get(name="d1").rendered_version == 1  # same rendered content


def test_killing_a_worker_mid_task_loses_no_work(api, tmp_path):
    """The task is redelivered after the timeout and the outcome is as if nothing happened."""
    import os
    import signal

    import psycopg

    from tests.workers import database_url

    make_devices(api, 5, lambda i: {"fleet": "f1", "tag": "v1"})
    report()
    api.post(FLEETS, fleet_body(), format="json")  # enqueues fleet-selector + fleet-validate
    with psycopg.connect(database_url()) as blocker, psycopg.connect(
            database_url(), autocommit=True) as monitor:
        # Hold the fleet's row: the worker's tasks block on it, mid-way.
        blocker.execute("SELECT 1 FROM fleets_fleet WHERE name = 'f1' FOR UPDATE")
        with task_workers(tmp_path / "w1", task_timeout="3s") as first:
            def validate_is_blocked():
                rows = monitor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%fleets_fleet%%'").fetchone()
                return rows[0] > 0
            wait_for(validate_is_blocked, timeout=60, what="the task to block mid-way")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        blocker.rollback()
    from devices.models import Device

    def on_template():
        return Device.objects.filter(
            rendered_spec__os__image="quay.io/org/os:v1").count()

    assert on_template() == 0  # the work was not done
    with task_workers(tmp_path / "w2", task_timeout="3s"):
        wait_for(lambda: on_template() == 5, timeout=90,
                 what="the redelivered task to finish the rollout")
    tvs = api.get(f"{FLEETS}/f1/templateversions").json()["items"]
    assert [tv["metadata"]["name"] for tv in tvs] == ["v1"]

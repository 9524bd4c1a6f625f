"""Server-side device status: the decision table of api.md §4.3, its transition events, the
agent status path, the user status subresource and the periodic connectivity check."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.health import (
    check_connectivity,
    compute_service_status,
    go_duration,
    refresh_devices,
    status_change_events,
)
from devices.status import initial_status

DEV = "/api/v1/devices"
NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
WINDOW = 300.0
RECENT = NOW - datetime.timedelta(seconds=30)
LONG_AGO = NOW - datetime.timedelta(seconds=WINDOW + 1)
DISCONNECTED = "Device is disconnected (last seen more than 5m0s)."


def condition(type_, status="True", reason="", message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def reported(**members) -> dict:
    """An agent report: healthy resources, running at renderedVersion 1, no applications."""
    status = initial_status()
    status.update({"resources": {"cpu": "Healthy", "memory": "Healthy", "disk": "Healthy"},
                   "config": {"renderedVersion": "1"}})
    status.update(members)
    return status


def row(status=None, *, last_seen=RECENT, annotations=None, owner=None, rendered_version=1,
        spec=None, service_conditions=None):
    return SimpleNamespace(status=status if status is not None else reported(),
                           annotations=annotations or {}, owner=owner, last_seen=last_seen,
                           rendered_version=rendered_version, spec=spec or {},
                           service_conditions=service_conditions or [])


def compute(device, fleet_tv=None) -> dict:
    return compute_service_status(device, now=NOW, disconnected_after=WINDOW,
                                  fleet_template_version=fleet_tv)


def statuses(members: dict) -> tuple:
    return tuple(members[k]["status"] for k in ("summary", "updated", "applicationsSummary",
                                                 "lifecycle"))


APP = {"name": "web", "ready": "1/1", "restarts": 0, "status": "Running", "embedded": False,
       "appType": "compose"}
REBOOTING = [condition("Updating", "True", "Rebooting")]
FLEET = {"fleet-controller/templateVersion": "v2", "fleet-controller/renderedTemplateVersion": "v2"}

# (scenario, device, fleet TemplateVersion, expected (summary, updated, apps, lifecycle))
DECISIONS = [
    ("a healthy standalone device at its rendered version",
     row(), None, ("Online", "UpToDate", "NoApplications", "Unknown")),
    ("a device silent for longer than the window",
     row(last_seen=LONG_AGO), None, ("Unknown", "Unknown", "Unknown", "Unknown")),
    ("a device never seen is Unknown but its update state is still judged",
     row(last_seen=None, rendered_version=2), None,
     ("Unknown", "OutOfDate", "Unknown", "Unknown")),
    ("awaiting reconnection wins over being disconnected",
     row(last_seen=LONG_AGO, annotations={"device-controller/awaitingReconnect": "true"}), None,
     ("AwaitingReconnect", "Unknown", "Unknown", "Unknown")),
    ("a paused conflict wins over everything the agent says",
     row(annotations={"device-controller/conflictPaused": "true"}), None,
     ("ConflictPaused", "UpToDate", "NoApplications", "Unknown")),
    ("a rebooting device with applications is Rebooting, Updating and apps Degraded",
     row(reported(conditions=REBOOTING, applications=[APP])), None,
     ("Rebooting", "Updating", "Degraded", "Unknown")),
    ("a critical resource is an Error, a warning Degraded",
     row(reported(resources={"cpu": "Warning", "memory": "Critical", "disk": "Healthy"})), None,
     ("Error", "UpToDate", "NoApplications", "Unknown")),
    ("a warning resource is Degraded",
     row(reported(resources={"cpu": "Healthy", "memory": "Healthy", "disk": "Warning"})), None,
     ("Degraded", "UpToDate", "NoApplications", "Unknown")),
    ("a standalone device behind its rendered version is OutOfDate",
     row(rendered_version=2), None, ("Online", "OutOfDate", "NoApplications", "Unknown")),
    ("an invalid spec is never up to date",
     row(service_conditions=[condition("SpecValid", "False", "Invalid", "bad repo")]), None,
     ("Online", "OutOfDate", "NoApplications", "Unknown")),
    ("a failed update is OutOfDate",
     row(reported(conditions=[condition("Updating", "False", "Error", "boom")]),
         rendered_version=2), None, ("Online", "OutOfDate", "NoApplications", "Unknown")),
    ("a fleet member that rendered the fleet's TemplateVersion and runs it is UpToDate",
     row(owner="Fleet/f1", annotations=FLEET), "v2",
     ("Online", "UpToDate", "NoApplications", "Unknown")),
    ("a fleet member not yet on the fleet's new TemplateVersion is OutOfDate",
     row(owner="Fleet/f1", annotations=FLEET), "v3",
     ("Online", "OutOfDate", "NoApplications", "Unknown")),
    ("a device running another OS image than its spec asks for is OutOfDate",
     row(reported(os={"image": "quay.io/os:1", "imageDigest": "sha256:a"}),
         spec={"os": {"image": "quay.io/os:2"}}), None,
     ("Online", "OutOfDate", "NoApplications", "Unknown")),
    ("the agent's application verdict is kept while connected",
     row(reported(applications=[APP], applicationsSummary={"status": "Error"})), None,
     ("Online", "UpToDate", "Error", "Unknown")),
    ("without a verdict, applications are judged from the workloads",
     row(reported(applications=[APP, {**APP, "name": "db", "status": "Starting"}])), None,
     ("Online", "UpToDate", "Degraded", "Unknown")),
    ("the agent starting decommissioning makes the lifecycle Decommissioning",
     row(reported(conditions=[condition("DeviceDecommissioning", "True", "Started")],
                  lifecycle={"status": "Enrolled"})), None,
     ("Online", "UpToDate", "NoApplications", "Decommissioning")),
    ("a completed decommissioning is Decommissioned",
     row(reported(conditions=[condition("DeviceDecommissioning", "True", "Completed")])), None,
     ("Online", "UpToDate", "NoApplications", "Decommissioned")),
    ("a failed decommissioning is Decommissioned too",
     row(reported(conditions=[condition("DeviceDecommissioning", "True", "Error", "x")])), None,
     ("Online", "UpToDate", "NoApplications", "Decommissioned")),
    ("without a decommissioning condition the lifecycle stays where enrollment put it",
     row(reported(lifecycle={"status": "Enrolled"})), None,
     ("Online", "UpToDate", "NoApplications", "Enrolled")),
]


@pytest.mark.parametrize("device,fleet_tv,expected", [d[1:] for d in DECISIONS],
                         ids=[d[0] for d in DECISIONS])
def test_the_service_side_status_decision_table(device, fleet_tv, expected):
    assert statuses(compute(device, fleet_tv)) == expected


def test_the_messages_users_and_tests_rely_on():
    assert compute(row())["summary"]["info"] == "Device's system resources are healthy."
    assert compute(row(last_seen=LONG_AGO))["summary"]["info"] == DISCONNECTED
    assert compute(row(last_seen=None))["summary"]["info"] == "Device has not reported yet."
    fleet_member = row(owner="Fleet/f1", annotations={})
    assert compute(fleet_member, "v1")["updated"]["info"] == (
        "Device has not yet been scheduled for update to the fleet's latest spec.")
    failed = row(owner="Fleet/f1", annotations={
        **FLEET, "fleet-controller/lastRolloutError": "no such label"})
    assert "no such label" in compute(failed, "v3")["updated"]["info"]
    assert [go_duration(s) for s in (300, 3600, 90, 45)] == ["5m0s", "1h0m0s", "1m30s", "45s"]


def events_of(before: dict, after: dict) -> list[tuple[str, str]]:
    return [(reason, kind) for reason, kind, _ in status_change_events(before, after)]


def with_members(summary="Online", updated="UpToDate", apps="Healthy", **extra) -> dict:
    status = reported(**extra)
    status.update({"summary": {"status": summary}, "updated": {"status": updated},
                   "applicationsSummary": {"status": apps}})
    return status


@pytest.mark.parametrize("before,after,expected", [
    (with_members(), with_members("Unknown", "Unknown", "Unknown"),
     [("DeviceDisconnected", "Warning")]),
    (with_members("Unknown", "Unknown", "Unknown"), with_members(),
     [("DeviceConnected", "Normal"), ("DeviceContentUpToDate", "Normal"),
      ("DeviceApplicationHealthy", "Normal")]),
    (with_members(), with_members("Rebooting", "Updating", "Degraded"),
     [("DeviceIsRebooting", "Normal"), ("DeviceContentUpdating", "Normal"),
      ("DeviceApplicationDegraded", "Warning")]),
    (with_members(updated="Updating"),
     with_members(updated="OutOfDate", conditions=[condition("Updating", "False", "Error")]),
     [("DeviceUpdateFailed", "Warning")]),
    (with_members(), with_members(updated="OutOfDate"), [("DeviceContentOutOfDate", "Normal")]),
    (with_members(), with_members(apps="Error"), [("DeviceApplicationError", "Warning")]),
    (with_members(), with_members(resources={"cpu": "Critical", "memory": "Warning",
                                             "disk": "Healthy"}),
     [("DeviceCPUCritical", "Warning"), ("DeviceMemoryWarning", "Warning")]),
    (with_members(resources={"cpu": "Healthy", "memory": "Healthy", "disk": "Critical"}),
     with_members(), [("DeviceDiskNormal", "Normal")]),
    (with_members(resources={"cpu": "Unknown", "memory": "Unknown", "disk": "Unknown"}),
     with_members(), []),
    (with_members(os={"image": "os:1", "imageDigest": "sha256:1"}),
     with_members(os={"image": "os:2", "imageDigest": "sha256:2"}),
     [("DeviceOSImageChanged", "Normal")]),
    (with_members(), with_members(), []),
])
def test_only_transitions_are_worth_an_event(before, after, expected):
    assert events_of(before, after) == expected


# -- on the database ------------------------------------------------------------------------

pytest_db = pytest.mark.django_db


def create(api, name="dev1", **meta):
    body = {"metadata": {"name": name, **meta}}
    assert api.put(f"{DEV}/{name}", body, format="json").status_code == 201


def agent_report(name="dev1", **members):
    from devices.models import Device
    from devices.services import record_agent_status

    return record_agent_status(Device.objects.get(name=name), reported(**members))


def device_events(api, name="dev1") -> list[str]:
    events = api.get("/api/v1/events", {"fieldSelector": f"involvedObject.name={name}",
                                        "order": "asc"}).json()
    return [e["reason"] for e in events["items"] if not e["reason"].startswith("Resource")]


def set_last_seen(name: str, ago: float) -> None:
    from devices.models import Device

    Device.objects.filter(name=name).update(
        last_seen=timezone.now() - datetime.timedelta(seconds=ago))


@pytest_db
def test_a_device_silent_for_longer_than_the_window_becomes_unknown_and_one_report_brings_it_back(
        api):
    create(api)
    agent_report(config={"renderedVersion": ""})
    assert api.get(f"{DEV}/dev1").json()["status"]["summary"]["status"] == "Online"
    assert check_connectivity() == 0  # still within the window: nothing to do
    set_last_seen("dev1", 301)
    assert check_connectivity() == 1
    status = api.get(f"{DEV}/dev1").json()["status"]
    assert (status["summary"], status["updated"]["status"],
            status["applicationsSummary"]["status"]) == (
        {"status": "Unknown", "info": DISCONNECTED}, "Unknown", "Unknown")
    assert check_connectivity() == 0  # the check is idempotent
    agent_report(config={"renderedVersion": ""})
    assert api.get(f"{DEV}/dev1").json()["status"]["summary"]["status"] == "Online"
    assert device_events(api) == [
        "DeviceConnected", "DeviceContentUpToDate",  # first report
        "DeviceDisconnected",
        "DeviceConnected", "DeviceContentUpToDate",
    ]
    disconnected = api.get("/api/v1/events", {"fieldSelector": "reason=DeviceDisconnected"})
    event = disconnected.json()["items"][0]
    assert event["type"] == "Warning" and event["actor"] == "service:flightctl-worker"


@pytest_db
def test_a_device_seen_again_without_a_status_report_is_brought_back_by_the_check(api):
    from devices.services import touch_last_seen
    from flightctl.models import DEFAULT_ORG_ID

    create(api)
    agent_report(config={"renderedVersion": ""})
    set_last_seen("dev1", 600)
    check_connectivity()
    touch_last_seen(DEFAULT_ORG_ID, "dev1")  # e.g. a /rendered poll
    assert check_connectivity() == 1
    assert api.get(f"{DEV}/dev1").json()["status"]["summary"]["status"] == "Online"


@pytest_db
def test_a_device_never_seen_stays_as_created_without_events(api):
    create(api)
    before = api.get(f"{DEV}/dev1").json()
    assert check_connectivity(timezone.now() + datetime.timedelta(days=1)) == 0
    assert api.get(f"{DEV}/dev1").json() == before
    assert device_events(api) == []


@pytest_db
def test_awaiting_reconnect_and_conflict_paused_survive_agent_reports(api):
    from devices.models import Device

    create(api)
    Device.objects.filter(name="dev1").update(
        annotations={"device-controller/awaitingReconnect": "true"})
    device = agent_report()
    assert device.status["summary"]["status"] == "AwaitingReconnect"
    Device.objects.filter(name="dev1").update(
        annotations={"device-controller/conflictPaused": "true"})
    assert agent_report().status["summary"]["status"] == "ConflictPaused"
    assert "DeviceConflictPaused" in device_events(api)
    Device.objects.filter(name="dev1").update(annotations={})
    assert agent_report().status["summary"]["status"] == "Online"


@pytest_db
def test_an_agent_cannot_set_service_members_and_its_unknowns_keep_stored_values(api):
    create(api)
    first = agent_report(integrity={"status": "Verified"},
                         applications=[APP], applicationsSummary={"status": "Healthy"})
    assert first.status["integrity"]["status"] == "Verified"
    again = agent_report(integrity={"status": "Unknown"}, applications=[APP],
                         applicationsSummary={"status": "Unknown"},
                         lifecycle={"status": "Decommissioned"},
                         updated={"status": "UpToDate"}, summary={"status": "Error"})
    assert again.status["integrity"]["status"] == "Verified"
    assert again.status["applicationsSummary"]["status"] == "Healthy"
    assert again.status["lifecycle"]["status"] == "Unknown"
    assert again.status["summary"]["status"] == "Online"


@pytest_db
def test_a_heartbeat_that_reports_nothing_new_does_not_move_the_resource_version(api):
    create(api)
    first = agent_report()
    version = first.resource_version
    assert agent_report().resource_version == version
    assert api.get(f"{DEV}/dev1").json()["metadata"]["resourceVersion"] == str(version)
    assert agent_report(resources={"cpu": "Warning", "memory": "Healthy",
                                   "disk": "Healthy"}).resource_version == version + 1
    assert device_events(api)[-1] == "DeviceCPUWarning"


@pytest_db
def test_recording_an_agent_status_takes_the_same_queries_for_a_fleet_member(api):
    from devices.models import Device
    from devices.services import record_agent_status

    create(api, "solo")
    create(api, "member")
    Device.objects.filter(name="member").update(owner="Fleet/f1")
    counts = []
    for name in ("solo", "member", "member"):
        device = Device.objects.get(name=name)
        with CaptureQueriesContext(connection) as queries:
            record_agent_status(device, reported(resources={
                "cpu": "Critical" if len(counts) == 2 else "Healthy",
                "memory": "Healthy", "disk": "Healthy"}))
        counts.append(len(queries))
    # lock+read (with the fleet's TemplateVersion), write, events; plus the savepoint pair
    assert counts[0] == counts[1] == counts[2] <= 6, counts


@pytest_db
def test_refreshing_devices_takes_the_same_queries_for_3_or_30_devices(api, settings):
    from devices.models import Device
    from fleets.models import Fleet

    Fleet.objects.create(name="f1", spec={}, annotations={"fleet-controller/templateVersion": "v1"})
    long_ago = timezone.now() - datetime.timedelta(hours=1)

    def make(count: int, prefix: str):
        Device.objects.bulk_create([
            Device(name=f"{prefix}{i}", status=reported(summary={"status": "Online"}),
                   last_seen=long_ago, owner="Fleet/f1" if i % 2 else None)
            for i in range(count)
        ])

    counts = []
    for count, prefix in ((3, "a"), (30, "b")):
        make(count, prefix)
        with CaptureQueriesContext(connection) as queries:
            assert refresh_devices(Device.objects.filter(name__startswith=prefix)) == count
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert Device.objects.filter(summary_status="Unknown").count() == 33
    assert Device.objects.filter(updated_status="Unknown").count() == 33


@pytest_db
def test_refreshing_pages_through_more_devices_than_a_page(api, monkeypatch):
    from devices import health
    from devices.models import Device

    monkeypatch.setattr(health, "PAGE_SIZE", 4)
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    Device.objects.bulk_create([
        Device(name=f"d{i}", status=reported(summary={"status": "Online"}), last_seen=long_ago)
        for i in range(10)
    ])
    assert check_connectivity() == 10
    assert Device.objects.filter(summary_status="Unknown").count() == 10


@pytest_db
def test_a_fleet_member_goes_out_of_date_when_its_fleet_moves_to_a_new_template_version(api):
    from devices.models import Device
    from fleets.models import Fleet

    fleet = Fleet.objects.create(name="f1", spec={},
                                 annotations={"fleet-controller/templateVersion": "v1"})
    create(api)
    Device.objects.filter(name="dev1").update(owner="Fleet/f1", rendered_version=1, annotations={
        "fleet-controller/templateVersion": "v1", "fleet-controller/renderedTemplateVersion": "v1"})
    assert agent_report().status["updated"]["status"] == "UpToDate"
    fleet.annotations = {"fleet-controller/templateVersion": "v2"}
    fleet.save()
    assert refresh_devices(Device.objects.filter(owner="Fleet/f1")) == 1
    updated = api.get(f"{DEV}/dev1").json()["status"]["updated"]
    assert updated == {"status": "OutOfDate", "info": (
        "Device has not yet been scheduled for update to the fleet's latest spec.")}
    assert device_events(api)[-1] == "DeviceContentOutOfDate"
    assert refresh_devices(Device.objects.filter(owner="Fleet/f1")) == 0


@pytest_db
def test_a_user_status_write_recomputes_the_service_members_but_does_not_count_as_seen(api):
    from devices.models import Device

    create(api)
    agent_report()
    set_last_seen("dev1", 10)
    seen = Device.objects.get(name="dev1").last_seen
    body = {"metadata": {"name": "dev1"}, "status": reported(
        summary={"status": "Online"}, resources={"cpu": "Critical", "memory": "Healthy",
                                                  "disk": "Healthy"})}
    r = api.put(f"{DEV}/dev1/status", body, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["status"]["summary"]["status"] == "Error"
    assert Device.objects.get(name="dev1").last_seen == seen
    event = api.get("/api/v1/events", {"fieldSelector": "reason=DeviceCPUCritical"}).json()
    assert event["items"][0]["actor"] == "user:admin"
    # A user cannot declare a silent device alive: the window still decides.
    set_last_seen("dev1", 3600)
    r = api.put(f"{DEV}/dev1/status", body, format="json")
    assert r.json()["status"]["summary"] == {"status": "Unknown", "info": DISCONNECTED}

"""A realistic inventory for the web console's query-count tests and its benchmark (bench/ui.py).

Devices as agents leave them (complete status with system info, resources, applications and
conditions), most owned by a fleet with a batched rollout under way, a share of them failing
or disconnected; pending enrollment requests, template versions, a repository and events.
Rows are written with ``bulk_create`` in chunks, so 100,000 devices take a minute or two.
"""

from __future__ import annotations

import datetime
import json

from django.utils import timezone

from flightctl.api import annotations as keys

FLEET = "edge"
CHUNK = 5000
TEMPLATE = {"metadata": {"labels": {"fleet": FLEET}},
            "spec": {"os": {"image": "quay.io/example/os:2.0"},
                     "config": [{"name": "motd", "inline": [
                         {"path": "/etc/motd", "content": "site {{ .metadata.labels.site }}"}]}]}}


def _status(index: int, now) -> dict:
    from devices.status import initial_status

    status = initial_status()
    failing, offline, behind = index % 50 == 7, index % 40 == 3, index % 10 == 1
    status["systemInfo"] = {"architecture": "amd64", "operatingSystem": "linux",
                            "agentVersion": "0.1.0", "bootID": f"boot-{index}"}
    status["resources"] = {"cpu": "Healthy", "memory": "Healthy",
                           "disk": "Critical" if failing else "Healthy"}
    status["config"] = {"renderedVersion": str(2 if behind else 3)}
    status["os"] = {"image": "quay.io/example/os:2.0", "imageDigest": "sha256:" + "0" * 64}
    status["applications"] = [{"name": "web", "ready": "1/1", "restarts": 0,
                               "status": "Error" if failing else "Running",
                               "embedded": False, "appType": "compose"}]
    status["applicationsSummary"] = {"status": "Error" if failing else "Healthy"}
    status["summary"] = {"status": "Unknown" if offline else "Error" if failing else "Online"}
    status["updated"] = {"status": "OutOfDate" if behind else "UpToDate"}
    status["lifecycle"] = {"status": "Enrolled"}
    status["conditions"] = [{"type": "Updating", "status": "False",
                             "reason": "Error" if failing else "Updated",
                             "message": "applications failed: web" if failing else "",
                             "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    return status


def populate(devices: int, *, start: int = 0, org_id=None) -> None:
    """Add ``devices`` devices (numbered from ``start``); the first call (``start == 0``) also
    creates the fleet, its template versions, enrollment requests, a repository and events."""
    from devices.models import Device
    from enrollment.models import EnrollmentRequest
    from fleets.models import Fleet, TemplateVersion
    from flightctl.models import DEFAULT_ORG_ID, Event
    from repos.models import Repository, ResourceSync

    org_id = org_id or DEFAULT_ORG_ID
    now = timezone.now()
    if start == 0:
        fleet = Fleet.objects.create(
            org_id=org_id, name=FLEET, generation=3,
            spec={"selector": {"matchLabels": {"fleet": FLEET}}, "template": TEMPLATE,
                  "rolloutPolicy": {"deviceSelection": {"strategy": "BatchSequence", "sequence": [
                      {"limit": "10%"}, {"selector": {"matchLabels": {"site": "s1"}}}]},
                      "successThreshold": "90%"}},
            annotations={keys.TEMPLATE_VERSION: "v3", keys.DEPLOYING_TEMPLATE_VERSION: "v3",
                         keys.BATCH_NUMBER: "1", keys.ROLLOUT_APPROVED: "true",
                         keys.APPROVAL_METHOD: "automatic"},
            status={"conditions": [
                {"type": "Valid", "status": "True", "reason": "Valid", "message": ""},
                {"type": "RolloutInProgress", "status": "True", "reason": "Active",
                 "message": "Rolling out batch 2"}]})
        for version in (1, 2, 3):
            spec = json.loads(json.dumps(TEMPLATE["spec"]))
            spec["os"]["image"] = f"quay.io/example/os:{version}.0"
            TemplateVersion.objects.create(org_id=org_id, fleet=fleet, name=f"v{version}",
                                           spec={"fleet": FLEET}, status=spec)
        Fleet.objects.create(org_id=org_id, name="lab", spec={
            "selector": {"matchLabels": {"fleet": "lab"}}, "template": TEMPLATE})
        EnrollmentRequest.objects.bulk_create([EnrollmentRequest(
            org_id=org_id, name=f"pending-{i:04d}", spec={
                "csr": "-", "labels": {"site": "s9"}, "deviceStatus": {"systemInfo": {
                    "architecture": "arm64", "operatingSystem": "linux"}}},
            status={"conditions": []}) for i in range(20)])
        Repository.objects.create(org_id=org_id, name="config", spec={
            "type": "git", "url": "https://example.com/config.git"}, status={"conditions": [
                {"type": "Accessible", "status": "True", "reason": "Accessible", "message": ""}]})
        ResourceSync.objects.create(org_id=org_id, name="fleets", spec={
            "repository": "config", "targetRevision": "main", "path": "/fleets"},
            status={"observedCommit": "0123456789abcdef", "conditions": []})
    rows = []
    for index in range(start, start + devices):
        behind = index % 10 == 1
        annotations = {keys.TEMPLATE_VERSION: "v3" if not behind else "v2",
                       keys.RENDERED_TEMPLATE_VERSION: "v3" if not behind else "v2"}
        if index % 10 == 5:
            annotations[keys.SELECTED_FOR_ROLLOUT] = ""
        rows.append(Device(
            org_id=org_id, name=f"dev-{index:06d}", owner=f"Fleet/{FLEET}",
            labels={"fleet": FLEET, "site": f"s{index % 20}", "alias": f"device-{index:06d}"},
            annotations=annotations, status=_status(index, now), spec=TEMPLATE["spec"],
            rendered_spec=TEMPLATE["spec"], rendered_version=3, rendered_at=now,
            last_seen=now - datetime.timedelta(hours=1 if index % 40 == 3 else 0)))
        if len(rows) == CHUNK:
            Device.objects.bulk_create(rows)
            rows = []
    Device.objects.bulk_create(rows)
    Event.objects.bulk_create([Event(
        org_id=org_id, involved_kind="Device", involved_name=f"dev-{i:06d}",
        reason="DeviceContentUpToDate", message="Device is up to date.",
        actor="service:flightctl-agent-api") for i in range(start, start + min(devices, 2000))])
